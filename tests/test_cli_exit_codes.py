"""Every command keeps the exit-code policy of docs/cli.md, through the real entry point.

0 ok, 1 a negative answer (drift found, gate failed, rolled back, audit broken, spec invalid,
model stale or tampered), 2 could not answer. Each test runs one command the way the
console script does (``sys.argv`` and ``abflow.cli.main.main``) for every code it can
return, including a bug: the command's core function is replaced by one that raises, and
the answer must be 2 with one sentence, never 1 (which CI reads as "drift found").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml

from abflow.cli.main import main
from abflow.spec import parse_experiment
from abflow.store import EventStore

UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/x"
ABFLOW = Path(sys.executable).with_name("abflow")
SPEC: dict[str, Any] = {
    "key": "exp",
    "unit": "user_id",
    "variants": [
        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
        {"name": "treatment", "model": "python:abflow.serving.demo_models:challenger"},
    ],
    "weights": [0.5, 0.5],
}
ROLLOUT_SPEC: dict[str, Any] = {
    **{k: v for k, v in SPEC.items() if k != "weights"},
    "key": "ramp",
    "rollout": {"steps": [{"traffic": 0.2, "min_duration_hours": 1, "min_samples": 10}]},
}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return " ".join((self.out + self.err).split())


Abflow = Callable[..., Run]


@pytest.fixture
def abflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Abflow:
    """``abflow ARGS`` in this process, as the console script runs it, in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ABFLOW_", "MLFLOW_", "FORCE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    environment = dict(os.environ)

    def invoke(*args: str) -> Run:
        monkeypatch.setattr(sys, "argv", ["abflow", *args])
        code: object = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        except Exception:  # escaped main: Python prints a traceback and exits 1
            code = 1
        finally:
            os.environ.clear()  # abflow serve exports its options as ABFLOW_* variables
            os.environ.update(environment)
        captured = capsys.readouterr()
        return Run(int(code) if isinstance(code, int) else 1, captured.out, captured.err)

    return invoke


def crash(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Replace ``target`` with a function that fails the way a bug does."""

    def boom(*args: object, **kwargs: object) -> object:
        return 1 / 0

    monkeypatch.setattr(target, boom)


def assert_bug_exits_2(run: Run) -> None:
    assert run.code == 2, run
    assert "error: unexpected ZeroDivisionError: division by zero\n" in run.err, run.err
    assert "rerun with ABFLOW_DEBUG=1 to see the traceback" in run.err
    assert "Traceback" not in run.err


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A store holding experiment ``exp`` with 40 balanced exposures, and ``ramp`` (a plan)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url) as store:
        phase = store.register_experiment(parse_experiment(SPEC)).phase
        store.register_experiment(parse_experiment(ROLLOUT_SPEC))
        store.write_events("exposure", [_exposure("exp", phase, i, i % 2) for i in range(40)])
    return url


def _exposure(key: str, phase: int, i: int, arm: int) -> dict[str, Any]:
    return {
        "event_id": f"{key}-{phase}-{i}",
        "ts": time.time(),  # after the phase started, or analysis leaves it out
        "experiment_key": key,
        "phase": phase,
        "unit_id": f"u{i}",
        "variant": ("control", "treatment")[arm],
        "attributes_json": None,
    }


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return path


def test_validate(abflow: Abflow, spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert abflow("validate", str(spec_file)).code == 0
    bad = spec_file.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump({**SPEC, "weights": [0.5, 0.6]}), encoding="utf-8")
    invalid = abflow("validate", str(spec_file), str(bad))
    assert (invalid.code, "weights sum to 1.1" in invalid.text) == (1, True)
    assert abflow("validate").code == 2
    missing = abflow("validate", str(spec_file), str(spec_file.with_name("missing.yaml")))
    assert (missing.code, "missing.yaml: no such file" in missing.text) == (2, True)
    crash(monkeypatch, "abflow.cli.validate.load_experiment")
    assert_bug_exits_2(abflow("validate", str(spec_file)))


def test_assign(abflow: Abflow, spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert abflow("assign", str(spec_file), "--unit", "u1").code == 0
    assert abflow("assign", str(spec_file)).code == 2  # neither --unit nor --ids
    missing = abflow("assign", "missing.yaml", "--unit", "u1")  # was 1: not an answer
    assert (missing.code, "missing.yaml" in missing.text) == (2, True)
    crash(monkeypatch, "abflow.cli.assign.assign")
    assert_bug_exits_2(abflow("assign", str(spec_file), "--unit", "u1"))


def test_power(abflow: Abflow, monkeypatch: pytest.MonkeyPatch) -> None:
    assert abflow("power", "--baseline", "0.1", "--mde", "0.05").code == 0
    assert abflow("power", "--baseline", "2", "--mde", "0.05").code == 2
    crash(monkeypatch, "abflow.cli.power.sample_size")
    assert_bug_exits_2(abflow("power", "--baseline", "0.1", "--mde", "0.05"))


def test_analyze(abflow: Abflow, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = abflow("analyze", "exp", "--store", store_url, "--format", "json")
    assert (ok.code, '"exp"' in ok.out) == (0, True)
    unknown = abflow("analyze", "nosuch", "--store", store_url)  # was 1
    assert (unknown.code, "nosuch" in unknown.err) == (2, True)
    assert abflow("analyze", "exp", "--store", UNREACHABLE_PG).code == 2
    crash(monkeypatch, "abflow.analysis.analyze")
    assert_bug_exits_2(abflow("analyze", "exp", "--store", store_url))


def test_gate(abflow: Abflow, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    passed = abflow("gate", "exp", "--store", store_url, "--min-units", "20")
    assert (passed.code, "abflow gate passed" in passed.text) == (0, True)
    failed = abflow("gate", "exp", "--store", store_url, "--min-units", "21")
    assert (failed.code, "abflow gate FAILED" in failed.text) == (1, True)
    unknown = abflow("gate", "nosuch", "--store", store_url)  # was 1: "the gate failed"
    assert (unknown.code, "nosuch" in unknown.err) == (2, True)
    assert abflow("gate", "exp", "--store", store_url, "--min-units", "-1").code == 2
    crash(monkeypatch, "abflow.cli.gate.evaluate_gate")
    assert_bug_exits_2(abflow("gate", "exp", "--store", store_url))


def _column(path: Path, values: list[float]) -> Path:
    path.write_text("amount\n" + "".join(f"{v}\n" for v in values), encoding="utf-8")
    return path


def test_drift(abflow: Abflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    ref = _column(tmp_path / "ref.csv", rng.normal(0, 1, 500).round(4).tolist())
    moved = _column(tmp_path / "cur.csv", rng.normal(2, 1, 500).round(4).tolist())
    assert abflow("drift", str(ref), str(ref)).code == 0
    found = abflow("drift", str(ref), str(moved))
    assert (found.code, "drift in 1 of 1 features: amount" in found.text) == (1, True)
    assert abflow("drift", str(ref), "missing.csv").code == 2
    crash(monkeypatch, "abflow.cli.drift.detect_drift")
    assert_bug_exits_2(abflow("drift", str(ref), str(moved)))  # was 1: "drift found"


def test_a_bug_shows_its_traceback_with_abflow_debug(
    abflow: Abflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _column(tmp_path / "ref.csv", [1.0, 2.0, 3.0])
    crash(monkeypatch, "abflow.cli.drift.detect_drift")
    monkeypatch.setenv("ABFLOW_DEBUG", "1")
    run = abflow("drift", str(ref), str(ref))
    assert run.code == 2
    assert "Traceback (most recent call last)" in run.err
    assert "ZeroDivisionError: division by zero" in run.err
    assert run.err.count("error: unexpected ZeroDivisionError") == 1
    assert "rerun with" not in run.err


def test_rollout(abflow: Abflow, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started = abflow("rollout", "tick", "ramp", "--store", store_url)
    assert (started.code, "ramp: started (step 1)" in started.text) == (0, True)
    assert abflow("rollout", "status", "ramp", "--store", store_url).code == 0
    with EventStore.open(store_url) as store:  # 50/50 traffic under an 80/20 plan: SRM
        phase = store.current_phase("ramp").phase
        store.write_events("exposure", [_exposure("ramp", phase, i, i % 2) for i in range(400)])
    rolled_back = abflow("rollout", "tick", "ramp", "--store", store_url)
    assert (rolled_back.code, "ramp: rolled back" in rolled_back.text) == (1, True)
    assert abflow("rollout", "reset", "ramp", "--store", store_url).code == 0
    assert abflow("rollout", "promote", "ramp", "--store", store_url).code == 0
    assert abflow("rollout", "tick", "nosuch", "--store", store_url).code == 2
    assert abflow("rollout", "tick", "exp", "--store", store_url).code == 2  # no plan
    status = abflow("rollout", "status", "nosuch", "--store", store_url)  # was 1
    assert (status.code, "nosuch" in status.err) == (2, True)
    assert abflow("rollout", "rollback", "nosuch", "--store", store_url).code == 2
    crash(monkeypatch, "abflow.rollout.controller.tick")
    assert_bug_exits_2(abflow("rollout", "tick", "ramp", "--store", store_url))


def test_db(abflow: Abflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert abflow("db", "upgrade", "--store", url).code == 0
    assert abflow("db", "status", "--store", url).code == 0
    assert abflow("db", "status", "--store", UNREACHABLE_PG).code == 2  # was 1
    assert abflow("db", "upgrade", "--store", "notaurl").code == 2
    crash(monkeypatch, "abflow.store.read_store_version")
    assert_bug_exits_2(abflow("db", "status", "--store", url))


def test_audit_verify(abflow: Abflow, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    intact = abflow("audit", "verify", "--store", store_url)
    assert (intact.code, "intact: 2 entries" in intact.text) == (0, True)
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as connection:
        connection.execute("update audit_log set payload_json = '{}' where seq = 1")
    broken = abflow("audit", "verify", "--store", store_url)
    assert (broken.code, "audit trail broken: audit entry 1" in broken.text) == (1, True)
    assert abflow("audit", "verify", "--store", UNREACHABLE_PG).code == 2  # was 1: "broken"
    crash(monkeypatch, "abflow.store.event_store.verify_chain")
    assert_bug_exits_2(abflow("audit", "verify", "--store", store_url))


def test_token(abflow: Abflow, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    created = abflow("token", "create", "--role", "viewer", "--name", "ci", "--store", store_url)
    assert created.code == 0, created
    assert abflow("token", "list", "--store", store_url).code == 0
    with EventStore.open(store_url) as store:
        [record] = store.list_tokens()
    assert abflow("token", "revoke", record.token_id, "--store", store_url).code == 0
    again = abflow("token", "revoke", record.token_id, "--store", store_url)  # was 1
    assert (again.code, "no active token" in again.err) == (2, True)
    wizard = ("token", "create", "--role", "wizard", "--name", "x", "--store", store_url)
    assert abflow(*wizard).code == 2
    crash(monkeypatch, "abflow.security.tokens.create_token")
    assert_bug_exits_2(
        abflow("token", "create", "--role", "viewer", "--name", "ci", "--store", store_url)
    )


def test_k8s_render(abflow: Abflow, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = abflow("k8s", "render", "--image", "img")
    assert (rendered.code, "kind: Deployment" in rendered.out) == (0, True)
    assert abflow("k8s", "render", "--image", "img", "--name", "NO").code == 2
    assert abflow("k8s", "render").code == 2  # --image is required: Click's usage error
    crash(monkeypatch, "abflow.deploy.render_manifests")
    assert_bug_exits_2(abflow("k8s", "render", "--image", "img"))


def test_serve(abflow: Abflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything up to the server; uvicorn itself is replaced (it would serve for ever)."""
    calls: list[str] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.append(app))
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    assert abflow("serve", "--no-auth", "--store", url, "--port", "0").code == 0
    assert calls == ["abflow.serving.app:create_app"]
    assert abflow("serve", "--workers", "0", "--store", url).code == 2

    def cannot_start(app: str, **kwargs: object) -> None:
        sys.exit(3)  # what uvicorn does when the app fails to start

    monkeypatch.setattr("uvicorn.run", cannot_start)
    assert abflow("serve", "--no-auth", "--store", url, "--port", "0").code == 2  # was 3
    crash(monkeypatch, "uvicorn.run")
    assert_bug_exits_2(abflow("serve", "--no-auth", "--store", url, "--port", "0"))


def test_demo(abflow: Abflow, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 0 after a full run is tested in tests/test_demo.py; here, what is not 0."""
    assert abflow("demo", "--users", "10").code == 2
    crash(monkeypatch, "abflow.demo.run_demo")
    assert_bug_exits_2(abflow("demo"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, empty_registry_db: Path) -> tuple[str, Path]:
    """An empty MLflow registry (a copy of the session's migrated one), and a joblib model."""
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("registry")
    shutil.copy(empty_registry_db, folder / "mlflow.db")
    model = folder / "m.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), model)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return uri, model


def test_models(
    abflow: Abflow, registry: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, model = registry
    tracking = ("--tracking-uri", uri)
    registered = abflow("models", "register", "fraud", str(model), "-a", "champion", *tracking)
    assert registered.code == 0, registered
    assert abflow("models", "list", *tracking).code == 0
    assert abflow("models", "verify", "models:/fraud@champion", *tracking).code == 0
    tampered = abflow(
        "models", "verify", "models:/fraud@champion", "--checksum", "0" * 64, *tracking
    )
    assert (tampered.code, "no longer match" in tampered.text) == (1, True)  # was a traceback
    assert abflow("models", "verify", "models:/ghost@champion", *tracking).code == 2
    assert abflow("models", "stale", "--max-age-days", "365", *tracking).code == 0
    stale = abflow("models", "stale", "--max-age-days", "0.000001", *tracking)  # 86 ms
    assert (stale.code, "stale: fraud@champion v1" in stale.text) == (1, True)
    assert abflow("models", "promote", "ghost", "1", *tracking).code == 2  # was 1
    crash(monkeypatch, "abflow.registry.list_models")
    assert_bug_exits_2(abflow("models", "list", *tracking))


def test_the_console_script_exits_by_the_policy(tmp_path: Path) -> None:
    """The installed ``abflow`` script: 0, 1 and 2 as the shell sees them."""
    ref = _column(tmp_path / "ref.csv", [float(i) for i in range(200)])
    cur = _column(tmp_path / "cur.csv", [float(i) + 500 for i in range(200)])
    store = f"sqlite:///{tmp_path / 'empty.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABFLOW_", "MLFLOW_"))}
    cases = {
        "no drift": (["drift", str(ref), str(ref)], 0),
        "drift": (["drift", str(ref), str(cur)], 1),
        "unreadable": (["drift", str(ref), str(tmp_path / "missing.csv")], 2),
        "usage": (["drift", str(ref), "--method", "nosuch"], 2),
        "gate cannot look": (["gate", "nosuch", "--store", store], 2),  # was 1: "failed"
    }
    started = {
        name: subprocess.Popen(
            [str(ABFLOW), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _) in cases.items()
    }
    codes = {}
    for name, process in started.items():
        try:
            _, err = process.communicate(timeout=180)
        finally:
            process.kill()  # no-op once it has exited
        assert "Traceback" not in err, err
        codes[name] = process.returncode
    assert codes == {name: code for name, (_, code) in cases.items()}
