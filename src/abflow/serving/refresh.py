"""Keeping a gateway's experiments in step with the store, where rollouts change them.

``abflow rollout tick`` (a CronJob, another host) moves traffic by registering a new spec
version in the store; gateways learn of it here:

* at start, a config spec whose experiment is under a rollout keeps the weights the rollout
  left in the store (a restarted pod must not undo a ramp step, or a rollback, by
  re-registering the weights written in its config file);
* while serving, :class:`StoreFollower` polls the store every few seconds and swaps in any
  newer version of a live experiment (new weights, and so a new phase for its exposures);
* at start and while serving, it also serves the experiments registered in the store by
  someone else: another worker or replica (``POST /v1/experiments`` reaches one of them),
  ``abflow experiments register``, or this gateway before a restart. Their specs pass the
  API's model policy, as they did when they were registered.
"""

from __future__ import annotations

import asyncio
import logging

from abflow.errors import AbflowError
from abflow.rollout.plan import state_from_audit
from abflow.serving.gateway import Gateway
from abflow.serving.model_policy import ModelPolicy, check_spec
from abflow.spec import ExperimentSpec, spec_hash
from abflow.store import EventStore

__all__ = ["StoreFollower", "with_rollout_weights"]

log = logging.getLogger("abflow.gateway")


def with_rollout_weights(spec: ExperimentSpec, store: EventStore) -> ExperimentSpec:
    """``spec`` with the stored weights when a rollout of the same variants has moved them."""
    try:
        stored = store.get_experiment(spec.key).spec
    except AbflowError:
        return spec  # never registered: nothing to keep
    if state_from_audit(store.audit_entries(spec.key)).stage == "not_started":
        return spec
    same_variants = [(v.name, v.model) for v in stored.variants] == [
        (v.name, v.model) for v in spec.variants
    ]
    if not same_variants or stored.effective_weights == spec.effective_weights:
        return spec
    log.info("experiment %s: keeping the rollout's weights %s", spec.key, stored.weights)
    return spec.model_copy(update={"weights": stored.weights})


class StoreFollower:
    """Polls the store and serves the newest version of every live experiment."""

    def __init__(
        self,
        gateway: Gateway,
        store: EventStore,
        interval_seconds: float,
        policy: ModelPolicy | None = None,
    ) -> None:
        self._gateway = gateway
        self._store = store
        self._interval = interval_seconds
        # API and CLI callers write the store: its specs pass the API's model policy (the
        # default, registry models only, never fails open).
        self._policy = policy or ModelPolicy()
        self._refused: dict[str, int] = {}  # key -> the version last refused, warned once

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged and retried at the next interval."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self.poll)
            except AbflowError as exc:
                log.warning("could not refresh experiments from the store: %s", exc)

    def poll(self) -> list[str]:
        """Serve the newest stored version of every experiment (blocking); the keys that
        changed. A version this gateway cannot serve (a model it may not or cannot load) is
        skipped with one warning, and the live version, if any, goes on serving."""
        changed = []
        for stored in self._store.list_experiments():
            key = stored.spec.key
            live = self._gateway.experiments.get(key)
            if live is not None and stored.spec_hash == spec_hash(live.spec):
                continue
            configured = () if live is None else live.configured_shadow
            shadow = tuple(name for name in configured if name in stored.spec.variant_names[1:])
            try:
                check_spec(stored.spec, self._policy)
                self._gateway.add_experiment(
                    stored.spec, shadow=shadow, default=self._gateway.default_key == key
                )
            except AbflowError as exc:
                if self._refused.get(key) != stored.version:
                    self._refused[key] = stored.version
                    log.warning(
                        "experiment %s: cannot serve version %d: %s", key, stored.version, exc
                    )
                continue
            self._refused.pop(key, None)
            log.info(
                "experiment %s: now serving version %d (phase %d)",
                key,
                stored.version,
                stored.phase,
            )
            changed.append(key)
        return changed
