"""The durable event pipeline: from a gateway's acknowledgement to a row in the store.

Its parts, in the order an event travels:
:mod:`~abflow.events.sink` (the rows the gateway writes and the sink protocol),
:mod:`~abflow.events.eventlog` (append, then group commit),
:mod:`~abflow.events.journal` (the local append-only journal),
:mod:`~abflow.events.shipper` (store writes in a child process),
:mod:`~abflow.events.spool` (what waits out a store outage), and for a Kafka pipeline
:mod:`~abflow.events.kafka` (the writer the event log ships to instead of the store) and
:mod:`~abflow.events.ingest` (the loader from Kafka into the store).
It depends on :mod:`abflow.store` (and :mod:`abflow.errors`) only, never on serving.

The invariants, stated here once; every part keeps them:

- **Acknowledged implies durable.** ``EventLog.append`` returns only after the event's
  record is in the journal (one ``write(2)``), so an event acknowledged to a caller survives
  a kill of the gateway process; group fsync bounds what a power loss can take.
- **What the store cannot hold is refused at the edge.** A 2xx from the gateway means the
  event is durable *and* the store will accept it: the gateway checks every field against
  the store's limits before it appends (:mod:`abflow.serving.inputs`), and a row the store
  still rejects goes to a dead-letter file (``journal_dir/rejected``), never blocking the
  rows behind it.
- **Replay in order.** Events that wait out a store outage in the spool are written, when the
  store is back, before any newer event.
- **Idempotent ids.** Every event carries a unique id (:func:`~abflow.events.sink.new_id`)
  and the store writes by id, so a replay after a crash stores nothing twice.
"""
