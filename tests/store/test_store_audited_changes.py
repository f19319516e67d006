"""Changes to what is served (experiment versions, tokens) land in the audit trail."""

from __future__ import annotations

from abflow.spec import ExperimentSpec, parse_experiment
from abflow.store import EventStore


def spec(weights: list[float], description: str = "") -> ExperimentSpec:
    return parse_experiment(
        {
            "key": "exp",
            "name": description,
            "variants": [
                {"name": "a", "model": "models:/m@champion"},
                {"name": "b", "model": "models:/m@challenger"},
            ],
            "weights": weights,
        }
    )


def test_new_versions_are_audited_with_their_actor_and_phase(store: EventStore) -> None:
    store.register_experiment(spec([0.5, 0.5]), actor="token:alice")
    store.register_experiment(spec([0.5, 0.5]), actor="token:alice")  # unchanged: nothing new
    store.register_experiment(spec([0.5, 0.5], "renamed"), actor="token:bob")  # same traffic
    store.register_experiment(spec([0.8, 0.2]), actor="token:carol", reason="ramp back")

    entries = store.audit_entries("exp")
    assert [(e.actor, e.action) for e in entries] == [
        ("token:alice", "experiment.registered"),
        ("token:bob", "experiment.registered"),
        ("token:carol", "experiment.registered"),
    ]
    assert [e.payload["version"] for e in entries] == [1, 2, 3]
    assert [e.payload["phase"] for e in entries] == [1, 1, 2]
    assert [e.payload["new_phase"] for e in entries] == [True, False, True]
    assert entries[2].payload["reason"] == "ramp back"
    stored = store.get_experiment("exp")
    assert entries[2].payload["spec_hash"] == stored.spec_hash
    assert store.verify_audit() == []


def test_tokens_are_audited_without_their_hash(store: EventStore) -> None:
    store.insert_token("t1", "ci", "service", "f" * 64, actor="cli")
    assert store.revoke_token("t1", actor="cli")
    assert not store.revoke_token("t1", actor="cli")  # nothing revoked: nothing audited
    entries = store.audit_entries()
    assert [e.action for e in entries] == ["token.created", "token.revoked"]
    assert entries[0].payload == {"token_id": "t1", "name": "ci", "role": "service"}
    assert all("f" * 64 not in str(e.payload) for e in entries)
    assert store.verify_audit() == []
