"""The gateway in front of a real Seldon MLServer (Open Inference Protocol v2) with its
scikit-learn runtime, in its own virtual environment (tests/serving/requirements-mlserver.txt,
built once and cached like the orchestrator environments).

The model is trained and pickled inside that environment (its scikit-learn may differ from
ours), which also computes the expected answers: P(positive) of each row, cast to FP32 as the
declared input is. MLServer picks ``predict_proba`` when the request names that output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from model_server import free_port

from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions
from cached_envs import ensure_env

# slow: a first run builds the environment; MLServer then takes 10-30 s to start.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).parent
WIDTH = 4
N_REQUESTS = 10
START_SECONDS = 300

TRAIN = """
import sys, joblib
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
x, y = make_classification(n_samples=400, n_features=4, random_state=3)
joblib.dump(LogisticRegression(C=0.5).fit(x, y), sys.argv[1])
"""

EXPECT = """
import sys, json, joblib, numpy as np
model = joblib.load(sys.argv[1])
rows = np.asarray(json.load(open(sys.argv[2])), dtype=np.float32)
print(json.dumps([float(model.predict_proba(row[None, :])[0, 1]) for row in rows]))
"""


def _run(python: Path, script: str, *args: str) -> str:
    done = subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """(infer URL, the environment's python, the pickled model); always stopped."""
    env = ensure_env("mlserver", HERE)
    python = env / "bin" / "python"
    folder = tmp_path_factory.mktemp("mlserver")
    model_path = folder / "fraud" / "model.joblib"
    model_path.parent.mkdir()
    _run(python, TRAIN, str(model_path))
    port = free_port()
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,  # inference pool processes do not start under uvloop
            }
        )
    )
    (model_path.parent / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "fraud",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "inputs": [{"name": "float_input", "datatype": "FP32", "shape": [-1, WIDTH]}],
                "parameters": {"uri": "./model.joblib", "version": "3"},
            }
        )
    )
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [str(env / "bin" / "mlserver"), "start", str(folder)],
        cwd=folder,
        env={**os.environ, "PATH": f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/v2/models/fraud/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"MLServer not ready in {START_SECONDS} s"
            time.sleep(0.2)
        yield f"{base}/v2/models/fraud/infer", python, model_path
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(server.pid, sig)
                server.wait(timeout=30)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


async def test_mlserver_answers_equal_its_models_predict_proba(
    mlserver: tuple[str, Path, Path],
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
    tmp_path: Path,
) -> None:
    url, python, model_path = mlserver
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "mlserver", "model": url},
        ],
        weights=[0.0, 1.0],
    )
    options = BackendOptions(output_name="predict_proba", output="proba", class_index=1)
    client = await make_client(spec, backends={url: options})
    # FP32-exact values, so the expected answers see the same numbers the server decodes.
    rows = rng.normal(size=(N_REQUESTS, WIDTH)).astype(np.float32).astype(np.float64)
    bodies: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        response = await client.post(
            "/v1/predict",
            json={"unit_id": f"u{i}", "features": row.tolist()},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    (tmp_path / "rows.json").write_text(json.dumps(rows.tolist()))
    expected = json.loads(_run(python, EXPECT, str(model_path), str(tmp_path / "rows.json")))

    assert [b["is_fallback"] for b in bodies] == [False] * N_REQUESTS
    assert [b["prediction"] for b in bodies] == expected
    predictions = events.rows["prediction"]
    assert [p["score"] for p in predictions] == expected
    assert [p["error"] for p in predictions] == [None] * N_REQUESTS
