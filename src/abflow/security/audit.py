"""The audit trail's hash chain: pure functions, no I/O.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical JSON,
so editing, removing, inserting or reordering any entry breaks every link from that point
on, and :func:`verify_chain` names the first entry where it happens. The store appends and
reads entries; this module only says what a valid chain is. (Truncating the newest entries
leaves a valid shorter chain: anchor the latest hash elsewhere, e.g. in a release note or
a log shipper, to detect that too.)

The stored spec versions hang off the chain: each ``experiment.registered`` entry records a
version's hash, so :func:`verify_spec_versions` can tell a spec edited, removed or added in
the store behind abflow's back, which would change what a re-run of an audited decision
analyses.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from abflow.errors import InvalidArgumentError

__all__ = [
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "AuditCheck",
    "AuditEntry",
    "StoredSpecVersion",
    "canonical_json",
    "entry_hash",
    "json_safe",
    "verify_chain",
    "verify_spec_versions",
]

REGISTERED = "experiment.registered"
"""The action of the entry that records a new spec version (its payload: version, spec_hash)."""

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry."""

HASHED_FIELDS = ("ts", "actor", "action", "experiment_key", "payload")
"""What an entry's hash covers (with the previous hash); ``seq`` is where it is stored."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the audit trail as stored: who did what, when, and its chain links."""

    seq: int
    ts: float
    actor: str
    action: str
    experiment_key: str | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def content(self) -> dict[str, Any]:
        """The fields the hash covers."""
        return {name: getattr(self, name) for name in HASHED_FIELDS}


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON null), tuples as lists.

    Evidence that could not be computed (an effect with no control value, a p-value with no
    units) is recorded as null: an audit entry must never fail on a number.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same data always gives the same text.

    NaN and infinities are written as null (see :func:`json_safe`), so the text, and the hash
    over it, are the same before and after a round trip through the store.
    """
    try:
        return json.dumps(
            json_safe(value),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        msg = f"audit entries must be plain JSON data (finite numbers, string keys): {exc}"
        raise InvalidArgumentError(msg) from exc


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``prev_hash`` and the entry's canonical content (see HASHED_FIELDS)."""
    missing = [name for name in HASHED_FIELDS if name not in entry]
    if missing:
        msg = f"an audit entry needs {', '.join(HASHED_FIELDS)}; missing {', '.join(missing)}"
        raise InvalidArgumentError(msg)
    ts = entry["ts"]
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
        msg = f"an audit entry's ts must be a finite number of seconds, got {ts!r}"
        raise InvalidArgumentError(msg)
    content = {name: entry[name] for name in HASHED_FIELDS}
    content["ts"] = float(ts)  # 5 and 5.0 are the same instant and must hash the same
    text = prev_hash + "\n" + canonical_json(content)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_chain(entries: Iterable[AuditEntry]) -> list[str]:
    """Every problem in a chain, oldest first, each a sentence naming its entry; [] if intact.

    Links are checked against each entry's *stored* hash, so one edited entry is reported
    once (its contents no longer match its hash) rather than breaking every later link.
    """
    problems: list[str] = []
    previous: AuditEntry | None = None
    for entry in entries:
        expected_prev = GENESIS_HASH if previous is None else previous.hash
        if previous is not None and entry.seq <= previous.seq:
            problems.append(
                f"audit entry {entry.seq} comes after entry {previous.seq}: "
                "sequence numbers are out of order"
            )
        if entry.prev_hash != expected_prev:
            after = "the start of the trail" if previous is None else f"entry {previous.seq}"
            problems.append(
                f"audit entry {entry.seq} does not link to {after} "
                f"(prev_hash {entry.prev_hash[:12]}…, expected {expected_prev[:12]}…): "
                "an entry before it was removed, inserted or reordered"
            )
        try:
            actual = entry_hash(entry.prev_hash, entry.content())
        except InvalidArgumentError as exc:
            problems.append(f"audit entry {entry.seq} cannot be hashed: {exc}")
        else:
            if actual != entry.hash:
                problems.append(
                    f"audit entry {entry.seq} ({entry.action} by {entry.actor}) was altered: "
                    "its contents no longer match its hash"
                )
        previous = entry
    return problems


@dataclass(frozen=True, slots=True)
class StoredSpecVersion:
    """One row of the store's spec history: the spec's canonical JSON as registration stored
    it, and the SHA-256 of that text recorded beside it."""

    experiment_key: str
    version: int
    spec_hash: str
    spec_json: str


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """What ``abflow audit verify`` found: the trail it read, the breaks in its hash chain,
    and the stored spec versions that disagree with it."""

    entries: list[AuditEntry]
    chain_problems: list[str]
    spec_problems: list[str]

    @property
    def problems(self) -> list[str]:
        return [*self.chain_problems, *self.spec_problems]


def verify_spec_versions(
    entries: Iterable[AuditEntry], versions: Iterable[StoredSpecVersion]
) -> list[str]:
    """Every disagreement between the stored spec versions and the audit trail, as sentences.

    The hash is checked against the stored text itself (not a spec parsed from it, which a
    later release may read with new defaults). A version whose text no longer has its hash,
    whose hash is not the one its audit entry recorded, that has no entry, or whose entry
    has no version, is named; [] when they all agree.
    """
    recorded: dict[tuple[str, int], AuditEntry] = {}
    for entry in entries:
        version = entry.payload.get("version") if entry.action == REGISTERED else None
        if entry.experiment_key is not None and isinstance(version, int):
            recorded[(entry.experiment_key, version)] = entry
    problems: list[str] = []
    for stored in versions:
        name = f"spec version {stored.version} of {stored.experiment_key!r}"
        stored_hash = stored.spec_hash.lower()
        if hashlib.sha256(stored.spec_json.encode()).hexdigest() != stored_hash:
            problems.append(f"{name} was altered: its text no longer matches its hash")
        audited = recorded.pop((stored.experiment_key, stored.version), None)
        if audited is None:
            problems.append(
                f"{name} has no audit entry: it was stored outside abflow, or its entry was removed"
            )
        elif (audited_hash := str(audited.payload.get("spec_hash")).lower()) != stored_hash:
            problems.append(
                f"{name} is not the one audit entry {audited.seq} recorded "
                f"(hash {stored_hash[:12]}…, recorded {audited_hash[:12]}…)"
            )
    for (key, version), entry in recorded.items():
        problems.append(
            f"spec version {version} of {key!r}, recorded by audit entry {entry.seq}, "
            "is missing from the store"
        )
    return problems
