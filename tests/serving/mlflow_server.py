"""A real ``mlflow models serve`` for tests: a scikit-learn model with a DataFrame signature
(columns f0..f3), logged to an SQLite tracking store in a temporary folder (artifacts in
``mlartifacts`` beside it) and served by
MLflow's own scoring server on a free 127.0.0.1 port.

The model is logged in a child interpreter (MLflow's logging warnings stay out of the test
process) and pickled beside the store, so a test can call the very same estimator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from model_server import free_port

COLUMNS = ("f0", "f1", "f2", "f3")
START_SECONDS = 300  # generous: the scoring server imports MLflow and pandas on a busy machine

LOG_MODEL = """
import sys, joblib, mlflow, pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from mlflow.models import infer_signature

x, y = make_classification(n_samples=400, n_features=4, random_state=11)
frame = pd.DataFrame(x, columns=["f0", "f1", "f2", "f3"])
model = LogisticRegression(C=0.3).fit(frame, y)
joblib.dump(model, sys.argv[1])
mlflow.set_tracking_uri(sys.argv[2])
with mlflow.start_run() as run:
    mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(frame, model.predict_proba(frame)),
        pyfunc_predict_fn=sys.argv[3],
    )
print(run.info.run_id)
"""


@dataclass(frozen=True)
class ServedModel:
    url: str
    """The scoring server's ``/invocations`` URL."""
    reference: str
    """``runs:/ID/model``: where its signature lives."""
    tracking_uri: str
    pickle_path: Path


def _env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ABFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PYTHONWARNINGS"] = "ignore"
    # The server runs `uvicorn` by name: the virtualenv's scripts must come first on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@contextmanager
def mlflow_scoring_server(folder: Path, predict_fn: str = "predict_proba") -> Iterator[ServedModel]:
    """Log the model, start ``mlflow models serve`` on it, wait for /ping; always stopped."""
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    pickle_path = folder / "model.joblib"
    env = _env(tracking_uri)
    logged = subprocess.run(
        [sys.executable, "-c", LOG_MODEL, str(pickle_path), tracking_uri, predict_fn],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if logged.returncode != 0:
        msg = f"logging the model failed: {logged.stderr[-2000:]}"
        raise RuntimeError(msg)
    run_id = logged.stdout.strip().splitlines()[-1]
    reference = f"runs:/{run_id}/model"
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [
            *(str(mlflow_cli), "models", "serve", "-m", reference, "--env-manager", "local"),
            *("-h", "127.0.0.1", "-p", str(port), "-w", "1"),
        ],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn workers stop with it (one process group)
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while True:
            if server.poll() is not None:
                msg = f"mlflow models serve exited: {(folder / 'server.log').read_text()[-2000:]}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"{base}/ping", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                msg = f"mlflow models serve did not answer /ping in {START_SECONDS} s"
                raise RuntimeError(msg)
            time.sleep(0.2)
        yield ServedModel(f"{base}/invocations", reference, tracking_uri, pickle_path)
    finally:
        _stop(server)
        log.close()


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group (this test's own child and its workers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue
