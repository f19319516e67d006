"""The audit hash chain: pure rules, then a stored trail that is tampered with and caught."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from abflow.cli.main import app
from abflow.errors import InvalidArgumentError
from abflow.security.audit import (
    GENESIS_HASH,
    AuditEntry,
    canonical_json,
    entry_hash,
    verify_chain,
)
from abflow.spec import ExperimentSpec, spec_hash
from abflow.spec import canonical_json as canonical_spec_json
from abflow.store import EventStore
from specs import two_arm_spec


def naive_hash(prev_hash: str, content: dict[str, Any]) -> str:
    """The documented rule, written out independently: sha256(prev + newline + sorted JSON)."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{text}".encode()).hexdigest()


def build_chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        content = {
            "ts": 1_700_000_000.5 + seq,
            "actor": f"user-{seq % 3}",
            "action": "promote" if seq % 2 else "ramp",
            "experiment_key": "checkout" if seq % 4 else None,
            "payload": {"step": seq, "weights": [0.9, 0.1], "note": "café ✓"},
        }
        digest = naive_hash(prev, content)
        entries.append(AuditEntry(seq=seq, prev_hash=prev, hash=digest, **content))
        prev = digest
    return entries


def test_entry_hash_follows_the_documented_rule() -> None:
    content = {"ts": 12.25, "actor": "ana", "action": "x", "experiment_key": None, "payload": {}}
    assert entry_hash(GENESIS_HASH, content) == naive_hash(GENESIS_HASH, content)
    assert entry_hash("a" * 64, content) != entry_hash("b" * 64, content)
    # Integer and float seconds are the same instant; key order never matters.
    assert entry_hash("p", {**content, "ts": 12}) == entry_hash("p", {**content, "ts": 12.0})
    assert entry_hash("p", dict(reversed(content.items()))) == entry_hash("p", content)


def test_canonical_json_rejects_what_cannot_round_trip() -> None:
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'
    # Undefined evidence is null, so the text is the same after a round trip.
    assert (
        canonical_json({"x": float("nan"), "y": (float("-inf"), 2.0)})
        == '{"x":null,"y":[null,2.0]}'
    )
    with pytest.raises(InvalidArgumentError, match="plain JSON"):
        canonical_json({"x": object()})
    with pytest.raises(InvalidArgumentError, match="missing payload"):
        entry_hash("p", {"ts": 1.0, "actor": "a", "action": "b", "experiment_key": None})


def test_intact_chain_has_no_problems() -> None:
    assert verify_chain(build_chain(8)) == []
    assert verify_chain([]) == []


def test_edited_entry_is_named_once() -> None:
    chain = build_chain(6)
    chain[3] = replace(chain[3], payload={"step": 999})
    problems = verify_chain(chain)
    assert len(problems) == 1
    assert problems[0].startswith("audit entry 4 ")
    assert "altered" in problems[0]


def test_removed_and_reordered_entries_break_the_links() -> None:
    chain = build_chain(6)
    removed = chain[:2] + chain[3:]
    assert verify_chain(removed)[0].startswith("audit entry 4 does not link to entry 2")
    swapped = [chain[0], chain[2], chain[1], *chain[3:]]
    assert verify_chain(swapped)[0].startswith("audit entry 3 does not link to entry 1")
    assert verify_chain(chain[1:])[0].startswith("audit entry 2 does not link to the start")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An upgraded store on a SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    opened = EventStore.open(url, upgrade=True)
    yield opened
    opened.close()


def test_store_appends_a_valid_chain(store: EventStore) -> None:
    appended = [
        store.append_audit("ana", "start", {"weights": [0.5, 0.5]}, experiment_key="a"),
        store.append_audit("bo", "ramp", {"weights": [0.9, 0.1]}, experiment_key="b"),
        store.append_audit("ana", "promote", experiment_key="a"),
    ]
    stored = store.audit_entries()
    assert stored == appended
    assert [e.seq for e in stored] == [1, 2, 3]
    assert stored[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(stored):
        assert after.prev_hash == before.hash
    for entry in stored:
        assert entry.hash == naive_hash(entry.prev_hash, entry.content())
    assert store.audit_entries(experiment_key="a") == [appended[0], appended[2]]
    assert store.verify_audit() == []


def test_concurrent_appends_never_fork_the_chain(store: EventStore) -> None:
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for step in range(10):
                store.append_audit(f"worker-{worker}", "tick", {"step": step})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entries = store.audit_entries()
    assert len(entries) == 40
    assert verify_chain(entries) == []


def tamper(store: EventStore, seq: int, payload_json: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            sa.text("update audit_log set payload_json = :p where seq = :s"),
            {"p": payload_json, "s": seq},
        )


def test_tampered_row_is_caught_by_the_store_and_the_command(store: EventStore) -> None:
    for step in range(5):
        store.append_audit("ana", "ramp", {"step": step}, experiment_key="checkout")
    runner = CliRunner()
    url = str(store.engine.url.render_as_string(hide_password=False))
    ok = runner.invoke(app, ["audit", "verify", "--store", url])
    assert ok.exit_code == 0, ok.output
    assert "intact: 5 entries" in ok.output
    tamper(store, 3, '{"step":20}')
    problems = store.verify_audit()
    assert len(problems) == 1
    assert problems[0].startswith("audit entry 3 (ramp by ana) was altered")
    broken = runner.invoke(app, ["audit", "verify", "--store", url])
    assert broken.exit_code == 1
    assert "audit entry 3" in broken.output


def test_deleted_row_is_caught(store: EventStore) -> None:
    for step in range(4):
        store.append_audit("ana", "ramp", {"step": step})
    with store.engine.begin() as connection:
        connection.execute(sa.text("delete from audit_log where seq = 2"))
    problems = store.verify_audit()
    assert problems[0].startswith("audit entry 3 does not link to entry 1")


def _spec(alpha: float) -> ExperimentSpec:
    return two_arm_spec(analysis={"alpha": alpha})


def _edit_version(store: EventStore, statement: str, **values: Any) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.text(statement), values)


FORGED = _spec(0.2)
SPEC_TAMPERING = {
    # The text of version 2 changed; its stored hash left as it was.
    "text edited": (
        "update experiment_versions set spec_json = :text where version = 2",
        {"text": canonical_spec_json(FORGED)},
        "spec version 2 of 'checkout' was altered: its text no longer matches its hash",
    ),
    # A careful forger recomputes the stored hash too: the audit entry still has the old one.
    "text and hash edited": (
        "update experiment_versions set spec_json = :text, spec_hash = :hash where version = 2",
        {"text": canonical_spec_json(FORGED), "hash": spec_hash(FORGED)},
        "spec version 2 of 'checkout' is not the one audit entry 2 recorded",
    ),
    "version deleted": (
        "delete from experiment_versions where version = 2",
        {},
        "spec version 2 of 'checkout', recorded by audit entry 2, is missing from the store",
    ),
    "version inserted": (
        "insert into experiment_versions (experiment_key, version, spec_json, spec_hash, "
        "created_at) values ('checkout', 4, :text, :hash, 0)",
        {"text": canonical_spec_json(FORGED), "hash": spec_hash(FORGED)},
        "spec version 4 of 'checkout' has no audit entry",
    ),
}


@pytest.mark.parametrize("tampering", SPEC_TAMPERING)
def test_spec_versions_edited_behind_the_trail_are_caught(
    store: EventStore, tampering: str
) -> None:
    """The spec a decision was analysed with is kept beside the trail, not in it: a spec
    version changed, removed or added in the store is named by verify, for the store and
    the command alike. Version 2 changes no traffic, so no phase refers to it."""
    for alpha in (0.05, 0.1, 0.01):
        store.register_experiment(_spec(alpha), actor="ana")
    assert [e.payload["version"] for e in store.audit_entries()] == [1, 2, 3]
    assert store.verify_audit() == []  # the control: registration alone is intact
    runner = CliRunner()
    url = str(store.engine.url.render_as_string(hide_password=False))
    assert runner.invoke(app, ["audit", "verify", "--store", url]).exit_code == 0

    statement, values, problem = SPEC_TAMPERING[tampering]
    _edit_version(store, statement, **values)
    problems = store.verify_audit()
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems[0]
    broken = runner.invoke(app, ["audit", "verify", "--store", url])
    assert broken.exit_code == 1
    assert "spec version" in broken.output


def test_a_version_stored_by_an_older_release_is_not_called_altered(store: EventStore) -> None:
    """An older release stored a spec without a field added since (it now has a default).
    Its stored text still has its stored hash, whatever today's spec model reads from it."""
    text = canonical_spec_json(_spec(0.05))
    older = json.loads(text)
    older.pop("condition")  # a field this release added, with a default
    older_text = json.dumps(older, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(older_text.encode()).hexdigest()
    assert digest != spec_hash(ExperimentSpec.model_validate_json(older_text))  # today's reading
    _edit_version(
        store,
        "insert into experiment_versions (experiment_key, version, spec_json, spec_hash, "
        "created_at) values ('checkout', 1, :text, :hash, 0)",
        text=older_text,
        hash=digest.upper(),  # and hex in capitals is the same hash
    )
    store.append_audit(
        "system",
        "experiment.registered",
        {"version": 1, "spec_hash": digest},
        experiment_key="checkout",
    )
    assert store.verify_audit() == []
