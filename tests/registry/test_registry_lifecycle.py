"""Model age, staleness alerts, retrain hooks (shell and a real local webhook), retirement."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from abflow.errors import InvalidArgumentError, ModelNotFoundError
from abflow.registry import (
    DATA_AS_OF_TAG,
    ShellRetrainHook,
    WebhookRetrainHook,
    model_age,
    register_model,
    resolve_model,
    retire_model,
    retrain_hook,
    stale_models,
    trigger_retrain,
    without_variant,
)
from abflow.spec import ExperimentSpec, parse_experiment


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def two_models(tracking_uri: str, fitted_models: dict[str, Any]) -> str:
    """``fraud`` v1 champion with data tagged 2026-01-01; ``churn`` v1 champion, untagged."""
    register_model(
        "fraud",
        fitted_models["logistic"],
        alias="champion",
        tags={DATA_AS_OF_TAG: "2026-01-01T00:00:00Z"},
        tracking_uri=tracking_uri,
    )
    register_model("fraud", fitted_models["tree"], alias="challenger", tracking_uri=tracking_uri)
    register_model("churn", fitted_models["tree"], alias="champion", tracking_uri=tracking_uri)
    return tracking_uri


def test_model_age_comes_from_registry_timestamps(two_models: str) -> None:
    client = _client(two_models)
    mv = client.get_model_version("fraud", "1")
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
    now = created + timedelta(days=10)
    age = model_age("fraud", alias="champion", now=now, tracking_uri=two_models)
    assert age.version == "1"
    assert age.age_seconds == pytest.approx(10 * 86400, abs=1e-3)
    assert age.data_as_of == datetime(2026, 1, 1, tzinfo=UTC)
    assert age.data_as_of_source == "tag"
    assert age.data_age_seconds == pytest.approx((now - age.data_as_of).total_seconds())
    # Without the tag the training run's start time stands for the data's age.
    churn = model_age("churn", version="1", now=now, tracking_uri=two_models)
    run = client.get_run(client.get_model_version("churn", "1").run_id)
    assert churn.data_as_of_source == "run"
    assert churn.data_as_of == datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        model_age("fraud", tracking_uri=two_models)
    with pytest.raises(ModelNotFoundError):
        model_age("fraud", alias="nobody", tracking_uri=two_models)


def test_stale_models_flags_only_champions_past_the_limit(
    two_models: str, caplog: pytest.LogCaptureFixture
) -> None:
    created = model_age("churn", version="1", tracking_uri=two_models).created_at
    soon = created + timedelta(days=5)
    assert stale_models(timedelta(days=30), now=soon, tracking_uri=two_models) == []
    later = created + timedelta(days=31)
    with caplog.at_level("WARNING", logger="abflow.registry"):
        stale = stale_models(timedelta(days=30), now=later, tracking_uri=two_models)
    assert sorted(s.age.name for s in stale) == ["churn", "fraud"]
    assert all(s.age.alias == "champion" for s in stale)
    assert len([r for r in caplog.records if "stale model" in r.getMessage()]) == 2
    # Data freshness alone: only fraud's data (tagged 2026-01-01) is older than 60 days at `soon`.
    by_data = stale_models(
        timedelta(days=365),
        max_data_age=timedelta(days=60),
        now=max(soon, datetime(2026, 3, 2, 1, tzinfo=UTC)),
        tracking_uri=two_models,
    )
    assert [s.age.name for s in by_data] == ["fraud"]
    assert by_data[0].reasons[0].startswith("data is ")
    # The challenger alias is checked only when asked for.
    challengers = stale_models(
        timedelta(days=1), alias="challenger", now=later, tracking_uri=two_models
    )
    assert [(s.age.name, s.age.version) for s in challengers] == [("fraud", "2")]
    with pytest.raises(InvalidArgumentError, match="positive"):
        stale_models(timedelta(0), tracking_uri=two_models)


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]
    status = 202

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        body = json.loads(self.rfile.read(length))
        body["_auth"] = self.headers.get("authorization")
        type(self).bodies.append(body)
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"queued")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"bodies": [], "status": 202})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/retrain", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _one_stale(uri: str) -> list[Any]:
    created = model_age("fraud", alias="champion", tracking_uri=uri).created_at
    return stale_models(
        timedelta(days=1), names=["fraud"], now=created + timedelta(days=2), tracking_uri=uri
    )


def test_webhook_hook_posts_each_stale_model(
    two_models: str, webhook_server: tuple[str, type[_Recorder]]
) -> None:
    url, handler = webhook_server
    stale = _one_stale(two_models)
    hook = retrain_hook(url, headers={"authorization": "Bearer t0ken"})
    assert isinstance(hook, WebhookRetrainHook)
    results = trigger_retrain(stale, hook)
    assert [(r.name, r.version, r.ok) for r in results] == [("fraud", "1", True)]
    assert results[0].detail == "HTTP 202: queued"
    (body,) = handler.bodies
    assert (body["name"], body["version"], body["alias"]) == ("fraud", "1", "champion")
    assert body["age_seconds"] == pytest.approx(2 * 86400, abs=1e-3)
    assert body["_auth"] == "Bearer t0ken"

    handler.status = 500
    (failed,) = trigger_retrain(stale, hook)
    assert not failed.ok
    assert failed.detail.startswith("HTTP 500")


def test_webhook_to_a_closed_port_reports_instead_of_raising(two_models: str) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (result,) = trigger_retrain(
        _one_stale(two_models), WebhookRetrainHook(f"http://127.0.0.1:{port}/", timeout_seconds=2)
    )
    assert not result.ok


def test_shell_hook_gets_json_on_stdin_and_env(two_models: str, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    script = (
        "import json, os, sys; d = json.load(sys.stdin); "
        "d['env'] = os.environ['ABFLOW_MODEL_NAME'] + '/' + os.environ['ABFLOW_MODEL_VERSION']; "
        f"open({str(out)!r}, 'w').write(json.dumps(d)); print('started job 42')"
    )
    hook = ShellRetrainHook([sys.executable, "-c", script])
    (result,) = trigger_retrain(_one_stale(two_models), hook)
    assert result.ok
    assert result.detail == "started job 42"
    seen = json.loads(out.read_text())
    assert (seen["name"], seen["env"]) == ("fraud", "fraud/1")
    failing = ShellRetrainHook([sys.executable, "-c", "import sys; sys.exit(3)"])
    (bad,) = trigger_retrain(_one_stale(two_models), failing)
    assert not bad.ok
    assert bad.detail.startswith("exit code 3")
    assert isinstance(retrain_hook("make retrain MODEL=fraud"), ShellRetrainHook)


def _spec(key: str, *models: str, **extra: Any) -> ExperimentSpec:
    variants = [{"name": f"v{i}", "model": m} for i, m in enumerate(models)]
    return parse_experiment({"key": key, "variants": variants, **extra})


def test_without_variant_moves_its_weight_to_control() -> None:
    spec = _spec(
        "e1",
        "models:/a/1",
        "models:/a/2",
        "models:/a/3",
        weights=[0.5, 0.3, 0.2],
        forced={"u1": "v1", "u2": "v2"},
        rollout={"challenger": "v1", "steps": [{"traffic": 0.1}]},
    )
    updated = without_variant(spec, "v1")
    assert updated.weights == pytest.approx([0.8, 0.0, 0.2])
    assert updated.forced == {"u2": "v2"}
    assert updated.rollout is None
    assert updated.variant_names == spec.variant_names
    with pytest.raises(InvalidArgumentError, match="control"):
        without_variant(spec, "v0")


def test_retire_takes_the_version_out_of_traffic_and_records_why(two_models: str) -> None:
    serving = _spec("fraud-ab", "models:/fraud@champion", "models:/fraud@challenger")
    by_number = _spec(
        "fraud-canary", "models:/churn/1", "models:/fraud/2", "models:/fraud@challenger"
    )
    unrelated = _spec("other", "models:/churn@champion", "models:/fraud/1")

    record = retire_model(
        "fraud",
        2,
        reason="label leak found in training data",
        experiments=[serving, by_number, unrelated],
        tracking_uri=two_models,
    )
    assert record.archived_aliases == {"challenger": "archived-challenger"}
    assert [(c.experiment_key, c.variant) for c in record.changes] == [
        ("fraud-ab", "v1"),
        ("fraud-canary", "v1"),
        ("fraud-canary", "v2"),
    ]
    canary = record.changes[-1].updated_spec
    assert canary is not None
    assert canary.weights == pytest.approx([1.0, 0.0, 0.0])
    assert not record.needs_manual_change
    # The retired variant stays listed at weight 0, pinned to its version: the alias it
    # named is archived below, and a spec naming it would stop the gateway from starting.
    ab = record.changes[0].updated_spec
    assert ab is not None
    assert [v.model for v in ab.variants] == ["models:/fraud@champion", "models:/fraud/2"]
    assert [v.model for v in canary.variants] == [
        "models:/churn/1", "models:/fraud/2", "models:/fraud/2"
    ]  # fmt: skip

    # The alias no longer resolves; the archived one does; the version says why.
    with pytest.raises(ModelNotFoundError):
        resolve_model("models:/fraud@challenger", tracking_uri=two_models)
    assert (
        resolve_model("models:/fraud@archived-challenger", tracking_uri=two_models).version == "2"
    )
    mv = _client(two_models).get_model_version("fraud", "2")
    assert mv.tags["abflow.retired"] == "true"
    assert mv.tags["abflow.retired_reason"] == "label leak found in training data"
    assert "label leak found in training data" in mv.description
    run = _client(two_models).get_run(record.run_id)
    assert run.data.params["reason"] == "label leak found in training data"
    assert run.data.params["experiments"] == "fraud-ab,fraud-canary"


def test_retiring_a_control_needs_a_person(two_models: str) -> None:
    spec = _spec("fraud-ab", "models:/fraud@champion", "models:/fraud@challenger")
    record = retire_model("fraud", 1, reason="stale", experiments=[spec], tracking_uri=two_models)
    assert record.needs_manual_change
    (change,) = record.changes
    assert change.updated_spec is None
    assert "control" in change.note
    with pytest.raises(InvalidArgumentError, match="needs a reason"):
        retire_model("fraud", 1, reason=" ", tracking_uri=two_models)
