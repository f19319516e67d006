"""Promotion is one act: traffic, the MLflow alias, the decision run and the audit entry.

A real embedded MLflow registry (SQLite, copied from a migrated template) holds ``ranker``
v1 (``@champion``, served by the control) and v2 (the challenger). Failures are injected
with an MLflow client that wraps the real one and fails (or lets a person roll back) at a
chosen call, and the store's compare-and-set runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from abflow.errors import RegistryError, StoreUnavailableError
from abflow.registry.promotion import PREVIOUS_VERSION_TAG, MlflowPromotionRegistry
from abflow.rollout.controller import promote, rollback, tick
from abflow.spec import parse_experiment
from abflow.store import EventStore

KEY = "ranker-v2"
T0 = 1_790_000_000.0


def spec_dict(control: str = "models:/ranker@champion", challenger: str = "models:/ranker/2"):
    return {
        "key": KEY,
        "variants": [
            {"name": "control", "model": control},
            {"name": "challenger", "model": challenger},
        ],
        "metrics": [
            {"name": "purchase", "kind": "conversion", "event": "purchase", "role": "primary"}
        ],
        "rollout": {
            "steps": [{"traffic": 0.5, "min_duration_hours": 0, "min_samples": 0}],
            "auto_promote": True,
        },
    }


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory: pytest.TempPathFactory, empty_registry_db: Path) -> Path:
    """A migrated MLflow registry holding ranker v1 (@champion) and v2 (no artifacts needed)."""
    folder = tmp_path_factory.mktemp("ranker-registry")
    shutil.copy(empty_registry_db, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("ranker")
    for _ in range(2):
        client.create_model_version("ranker", source=(folder / "model").as_uri())
    client.set_registered_model_alias("ranker", "champion", "1")
    return folder / "mlflow.db"


@pytest.fixture
def tracking_uri(tmp_path: Path, registry_template: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("ABFLOW_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ABFLOW_MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    shutil.copy(registry_template, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


class FailingClient:
    """The real MLflow client, except that ``method`` first runs ``before`` (which may raise)."""

    def __init__(self, uri: str, method: str, before: Callable[[], None]) -> None:
        self._real = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self._before = {method: before}
        self._method = method
        self.calls = 0

    def also(self, method: str, before: Callable[[], None]) -> None:
        self._before[method] = before

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._real, name)
        if name not in self._before:
            return real

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls += name == self._method
            self._before[name]()
            return real(*args, **kwargs)

        return wrapped


def mlflow_down() -> None:
    msg = "tracking server unavailable (injected)"
    raise MlflowException(msg)


def champion(uri: str) -> str | None:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return str(client.get_model_version_by_alias("ranker", "champion").version)
    except MlflowException:
        return None


def decision_runs(uri: str, *, deleted: bool = False) -> list[Any]:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(f"abflow/{KEY}")
    if experiment is None:
        return []
    view = 2 if deleted else 1  # ViewType.DELETED_ONLY / ACTIVE_ONLY
    runs = client.search_runs([experiment.experiment_id], run_view_type=view)
    return sorted(runs, key=lambda run: run.info.start_time)


def started(store: EventStore, spec: dict[str, Any] | None = None) -> None:
    store.register_experiment(parse_experiment(spec or spec_dict()))
    assert tick(store, KEY, now=T0).action == "started"


def weights(store: EventStore) -> list[float]:
    return store.get_experiment(KEY).spec.effective_weights


def test_an_alias_that_cannot_be_put_back_is_named_in_the_error(
    ramp_store: EventStore, tracking_uri: str
) -> None:
    started(ramp_store)
    client = FailingClient(tracking_uri, "create_run", mlflow_down)
    moves = 0

    def second_move_fails() -> None:  # the promotion's move works, the undo does not
        nonlocal moves
        moves += 1
        if moves == 2:
            mlflow_down()

    client.also("set_registered_model_alias", second_move_fails)
    registry = MlflowPromotionRegistry(tracking_uri, client=client)
    with pytest.raises(RegistryError) as raised:
        promote(ramp_store, KEY, actor="user:alice", registry=registry)

    assert str(raised.value).startswith(
        "the decision was not recorded, and ranker@champion could not be put back to version 1"
    )
    assert "cannot log run" in str(raised.value.__cause__)  # the first failure is kept
    assert (moves, champion(tracking_uri), weights(ramp_store)) == (2, "2", [0.5, 0.5])
    assert [e.action for e in ramp_store.audit_entries(KEY)][-1] == "rollout.step"


def test_promotion_moves_the_alias_logs_the_run_and_a_rollback_restores_it(
    ramp_store: EventStore, tracking_uri: str
) -> None:
    started(ramp_store)
    registry = MlflowPromotionRegistry(tracking_uri)
    result = promote(ramp_store, KEY, actor="user:alice", reason="held a week", registry=registry)

    assert result.action == "promoted"
    assert result.reasons == ["held a week", "ranker@champion: version 1 → 2"]
    assert (champion(tracking_uri), weights(ramp_store)) == ("2", [0.0, 1.0])
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    assert client.get_model_version("ranker", "2").tags[PREVIOUS_VERSION_TAG] == "1"
    [run] = decision_runs(tracking_uri)
    assert run.data.params["decision"] == "promoted"
    assert run.data.params["registry.previous_version"] == "1"
    entry = ramp_store.audit_entries(KEY)[-1]
    assert entry.action == "rollout.promoted"
    assert entry.payload["registry"] == {
        "name": "ranker",
        "alias": "champion",
        "version": "2",
        "previous_version": "1",
        "run_id": run.info.run_id,
    }

    back = rollback(ramp_store, KEY, actor="user:bob", reason="latency", registry=registry)
    assert back.action == "rolled_back"
    assert back.reasons == ["latency", "ranker@champion: version 2 → 1"]
    assert (champion(tracking_uri), weights(ramp_store)) == ("1", [1.0, 0.0])
    assert [r.data.params["decision"] for r in decision_runs(tracking_uri)] == [
        "promoted",
        "rolled_back",
    ]
    assert ramp_store.audit_entries(KEY)[-1].payload["registry"]["version"] == "1"


def test_auto_promote_in_tick_moves_the_alias(ramp_store: EventStore, tracking_uri: str) -> None:
    started(ramp_store)
    registry = MlflowPromotionRegistry(tracking_uri)
    result = tick(ramp_store, KEY, now=T0 + 60, registry=registry)
    assert (result.action, result.reasons[-1]) == ("promoted", "ranker@champion: version 1 → 2")
    assert champion(tracking_uri) == "2"
    assert len(decision_runs(tracking_uri)) == 1


def test_mlflow_failing_after_the_alias_moved_changes_nothing(
    ramp_store: EventStore, tracking_uri: str
) -> None:
    started(ramp_store)
    entries = len(ramp_store.audit_entries(KEY))
    client = FailingClient(tracking_uri, "create_run", mlflow_down)
    registry = MlflowPromotionRegistry(tracking_uri, client=client)

    with pytest.raises(RegistryError, match="cannot log run 'rollout promoted'"):
        promote(ramp_store, KEY, actor="user:alice", registry=registry)

    assert client.calls == 1  # it failed after the alias had moved
    assert champion(tracking_uri) == "1"
    assert (len(ramp_store.audit_entries(KEY)), weights(ramp_store)) == (entries, [0.5, 0.5])


def test_a_rollback_between_alias_and_store_puts_the_alias_back(
    ramp_store: EventStore, ramp_store_url: str, tracking_uri: str
) -> None:
    """The compare-and-set: a person rolls back while the promotion is between MLflow and
    the store; the store refuses the promotion, the alias and the run are undone."""
    started(ramp_store)
    seen: list[str | None] = []

    def person_rolls_back() -> None:
        seen.append(champion(tracking_uri))
        with EventStore.open(ramp_store_url) as other:
            rollback(other, KEY, actor="user:oncall", reason="pager")

    client = FailingClient(tracking_uri, "set_terminated", person_rolls_back)
    registry = MlflowPromotionRegistry(tracking_uri, client=client)
    result = promote(ramp_store, KEY, actor="user:alice", registry=registry)

    assert seen == ["2"]  # the alias had moved when the store was overtaken
    assert (result.action, result.reasons) == (
        "held",
        ["the rollout moved meanwhile (another controller?)"],
    )
    assert (champion(tracking_uri), weights(ramp_store)) == ("1", [1.0, 0.0])
    moves = [e.action for e in ramp_store.audit_entries(KEY) if e.action.startswith("rollout.")]
    assert moves == ["rollout.step", "rollout.rolled_back"]  # no promotion recorded
    assert (len(decision_runs(tracking_uri)), len(decision_runs(tracking_uri, deleted=True))) == (
        0,
        1,
    )


def test_a_challenger_outside_the_registry_is_promoted_with_a_note(
    ramp_store: EventStore, tracking_uri: str
) -> None:
    spec = spec_dict(challenger="python:abflow.serving.demo_models:challenger")
    started(ramp_store, spec)
    result = promote(
        ramp_store, KEY, actor="user:alice", registry=MlflowPromotionRegistry(tracking_uri)
    )
    assert result.reasons[-1] == (
        "python:abflow.serving.demo_models:challenger is not a registry model (models:/): "
        "no alias moved"
    )
    assert (champion(tracking_uri), weights(ramp_store)) == ("1", [0.0, 1.0])
    assert decision_runs(tracking_uri) == []


def test_cli_promote_moves_the_alias_and_exits_2_when_the_registry_is_down(
    tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abflow.cli.main import app

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # refused at once: no retries
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url) as store:
        started(store)
        entries = len(store.audit_entries(KEY))
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    down = runner.invoke(
        app,
        ["rollout", "promote", KEY, "--store", url, "--tracking-uri", "http://127.0.0.1:9"],
        env=env,
    )
    assert down.exit_code == 2, down.output
    assert "cannot move ranker@champion" in down.output
    with EventStore.open(url) as store:
        assert (len(store.audit_entries(KEY)), weights(store)) == (entries, [0.5, 0.5])

    done = runner.invoke(
        app, ["rollout", "promote", KEY, "--store", url, "--tracking-uri", tracking_uri], env=env
    )
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        f"{KEY}: promoted; all traffic goes to the challenger",
        "  - ranker@champion: version 1 → 2",
    ]
    assert champion(tracking_uri) == "2"
    back = runner.invoke(
        app, ["rollout", "rollback", KEY, "--store", url, "--tracking-uri", tracking_uri], env=env
    )
    assert back.output.splitlines()[1:] == ["  - ranker@champion: version 2 → 1"]
    assert (back.exit_code, champion(tracking_uri)) == (0, "1")


class UnreachableStore:
    """The real store, except that its compare-and-set write finds the server gone."""

    def __init__(self, real: EventStore) -> None:
        self._real = real
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def register_if_unchanged(self, *args: Any, **kwargs: Any) -> bool:
        self.attempts += 1
        msg = "connection refused (injected)"
        raise StoreUnavailableError(msg)


def test_a_store_failure_after_the_alias_moved_puts_it_back(
    ramp_store: EventStore, tracking_uri: str
) -> None:
    started(ramp_store)
    entries = len(ramp_store.audit_entries(KEY))
    store = UnreachableStore(ramp_store)
    registry = MlflowPromotionRegistry(tracking_uri)

    with pytest.raises(StoreUnavailableError, match="connection refused"):
        promote(store, KEY, actor="user:alice", registry=registry)  # type: ignore[arg-type]

    assert store.attempts == 1
    assert champion(tracking_uri) == "1"
    assert (len(ramp_store.audit_entries(KEY)), weights(ramp_store)) == (entries, [0.5, 0.5])
    assert (len(decision_runs(tracking_uri)), len(decision_runs(tracking_uri, deleted=True))) == (
        0,
        1,
    )
