"""The CLI's promise on bad input: exit code 2 and a sentence, never a traceback.

Exit 1 is an answer ("drift found", "spec invalid"), so input the command cannot use exits 2
(docs/cli.md); only ``validate``, whose answer is about the files themselves, exits 1.

Most commands run in this process through ``abflow.cli.main.main`` (the console script's
entry point, with its error handling), which is fast; an exception escaping ``main`` is what
the console script would print as a traceback. Cases that reach uvicorn or MLflow run as
real subprocesses, all started at once, since they touch process-wide state (logging, MLflow).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from abflow.cli.main import main
from abflow.events.sink import exposure_row
from abflow.spec import parse_experiment
from abflow.store import EventStore

UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/x"
ABFLOW = Path(sys.executable).with_name("abflow")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

GOOD_SPEC = """\
key: exp
unit: user_id
variants:
  - {name: control, model: "python:abflow.serving.demo_models:champion"}
  - {name: treatment, model: "python:abflow.serving.demo_models:challenger"}
weights: [0.5, 0.5]
"""
FILES: dict[str, bytes] = {
    "good.yaml": GOOD_SPEC.encode(),
    "bad.yaml": b"key: [unclosed\n",
    "bad.json": b'{"key": ',
    "list.yaml": b"- a\n- b\n",
    "partial.yaml": b"key: x\n",
    "empty.yaml": b"",
    "latin1.yaml": "key: caf\u00e9\n".encode("latin-1"),
    "wrongcol.csv": b"a,b\n1,2\n",
    "ids.csv": b"user_id\nu1\nu2\n",
    "config-bad.yaml": b"experiments: [\n",
    "config-unknown.yaml": b"unknown_field: 1\n",
    "config-latin1.yaml": "store_url: caf\u00e9\n".encode("latin-1"),
    "config-missing-spec.yaml": b"experiments: [nosuch.yaml]\n",
    "config-bad-model.yaml": b"experiments: [bad-model.yaml]\n",
    "rollout-int.yaml": GOOD_SPEC.encode() + b"rollout: 0\n",
    "huge-int.json": b'{"key": 1' + b"0" * 5000 + b"}",  # beyond int()'s 4300 digits
    "deep.json": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "list-key.yaml": b"? [a, b]\n: 1\n",
    "corrupt.pkl": b"not a pickle",  # joblib raises KeyError on it
    "empty.pkl": b"",  # EOFError, which Click would print as "Aborted."
    "bad-model.yaml": GOOD_SPEC.replace(
        "abflow.serving.demo_models:champion", "nosuchmodule:thing"
    ).encode(),
}


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the input files, and an initialised store holding one experiment."""
    root = tmp_path_factory.mktemp("cli")
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    with EventStore.open(f"sqlite:///{root / 'store.db'}") as store:
        version = store.register_experiment(parse_experiment({**_good_spec_data()}, "test"))
        rows = [
            exposure_row(
                experiment_key="exp",
                phase=version.phase,
                unit_id=f"u{i}",
                variant=("control", "treatment")[i % 2],
                attributes=None,
            )
            for i in range(40)
        ]
        store.write_events("exposure", rows)
    return root


def _good_spec_data() -> dict[str, object]:
    import yaml

    data = yaml.safe_load(GOOD_SPEC)
    assert isinstance(data, dict)
    return data


def _clean_environment() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ABFLOW_", "MLFLOW_", "FORCE_"))
    }
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    return env


def _no_server(*args: object, **kwargs: object) -> None:
    msg = "abflow serve got as far as starting a server"
    raise AssertionError(msg)


@pytest.fixture
def run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Outcome]:
    """Run ``abflow ARGS`` in this process the way the console script does."""
    monkeypatch.chdir(workdir)
    for name in list(os.environ):
        if name.startswith(("ABFLOW_", "MLFLOW_", "FORCE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr("uvicorn.run", _no_server)
    environment = dict(os.environ)

    def invoke(*args: str) -> Outcome:
        monkeypatch.setattr(sys, "argv", ["abflow", *args])
        code: int = 0
        escaped = ""
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            code = 1
            escaped = traceback.format_exc()
        finally:
            os.environ.clear()  # abflow serve exports its options as ABFLOW_* variables
            os.environ.update(environment)
        captured = capsys.readouterr()
        return Outcome(code, ANSI.sub("", captured.out), ANSI.sub("", captured.err) + escaped)

    return invoke


def assert_one_sentence_error(outcome: Outcome, *mentions: str, code: int = 2) -> None:
    """No traceback, a message on stderr that mentions the culprit, and exit ``code``."""
    assert outcome.code != 0, outcome
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    assert "error: unexpected" not in outcome.stderr, outcome.stderr  # the mark of a bug
    message = outcome.stderr.strip()
    assert message, "nothing on stderr"
    flat = " ".join(message.split())
    for mention in mentions:
        assert " ".join(mention.split()) in flat, (mention, message)
    assert outcome.code == code, outcome


def xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


def case(
    *args: str, mentions: tuple[str, ...] = (), bug: str | None = None, code: int = 2
) -> object:
    marks = [xfail(bug)] if bug else []
    return pytest.param(list(args), mentions, code, id=" ".join(args)[:80], marks=marks)


IN_PROCESS = [
    # validate: a file it cannot use is its answer "this spec has problems" (1)
    case("validate", mentions=("spec file",)),
    case("validate", "missing.yaml", mentions=("missing.yaml", "no such file"), code=2),
    case("validate", "bad.yaml", mentions=("bad.yaml", "not valid YAML"), code=1),
    case("validate", "bad.json", mentions=("bad.json", "not valid JSON"), code=1),
    case("validate", "list.yaml", mentions=("mapping",), code=1),
    case("validate", "partial.yaml", mentions=("variants",), code=1),
    case("validate", "empty.yaml", mentions=("empty.yaml",), code=1),
    case("validate", ".", mentions=("directory",), code=2),
    case("validate", "latin1.yaml", mentions=("latin1.yaml", "UTF-8"), code=1),
    case("validate", "[/]x.yaml", mentions=("[/]x.yaml",), code=2),
    case("validate", "rollout-int.yaml", mentions=("rollout",), code=1),
    case("validate", "huge-int.json", mentions=("huge-int.json", "cannot be read"), code=1),
    case("validate", "deep.json", mentions=("deep.json", "nested too deeply"), code=1),
    case("validate", "list-key.yaml", mentions=("list-key.yaml", "unhashable"), code=1),
    case("assign", "good.yaml", "--unit", "u1", "--groups", "deep.json", mentions=("--groups",)),
    case("assign", "good.yaml", "--unit", "u1", "--groups", "bad.yaml", mentions=("--groups",)),
    case("db", "upgrade", "--store", "postgresql://u:pw@h:notaport/db", mentions=("store URL",)),
    case("analyze", "exp", "--store", "sqlite:///store.db?timeout=abc", mentions=("SQLite",)),
    case("analyze", "exp", "--spec-version", "9223372036854775808", mentions=("--spec-version",)),
    case("ingest", "--from", "kafka://[::1/p", "--once", mentions=("not a Kafka URL",)),
    case(
        "ingest",
        "--from",
        "kafka://127.0.0.1:1/p?bogus.setting=1",
        "--store",
        "sqlite:///ingest.db",
        "--once",
        mentions=("bogus.setting",),
    ),
    # power
    case(
        "power", "--baseline", "0.1", "--mde", "0.05", "--daily-units", "1e-320", mentions=("days",)
    ),
    case("power", mentions=("--baseline",)),
    case("power", "--baseline", "2", "--mde", "0.05", mentions=("baseline",)),
    case("power", "--baseline", "0.1", "--mde", "0", mentions=("mde",)),
    case("power", "--baseline", "0.1", "--mde", "abc", mentions=("--mde",)),
    case("power", "--baseline", "0.1", "--mde", "nan", mentions=("mde",)),
    case(
        "power", "--baseline", "0.1", "--mde", "0.05", "--weights", "0.5,x", mentions=("--weights",)
    ),
    case(
        "power",
        "--baseline",
        "0.1",
        "--mde",
        "0.05",
        "--weights",
        "0.5,0.6",
        mentions=("sum to 1",),
    ),
    case("power", "--baseline", "0.1", "--mde", "0.05", "--variants", "1", mentions=("variants",)),
    case("power", "--baseline", "0.1", "--mde", "0.05", "--alpha", "1.5", mentions=("alpha",)),
    case("power", "--baseline", "0.1", "--sample-size", "abc", mentions=("--sample-size",)),
    case("power", "--baseline", "0.1", "--sample-size", "0", mentions=("units",)),
    case("power", "--mean", "3", "--mde", "0.05", mentions=("--std",)),
    case("power", "--baseline", "0.1", "--mde", "0.05", "--format", "xml", mentions=("--format",)),
    case(
        "power",
        "--baseline",
        "0.1",
        "--mde",
        "0.05",
        "--daily-units",
        "1000",
        "--coverage",
        "2",
        mentions=("coverage",),
    ),
    case(
        "power",
        "--baseline",
        "0.1",
        "--mde",
        "0.05",
        "--coverage",
        "-1",
        mentions=("coverage",),
    ),
    case(
        "power",
        "--baseline",
        "0.1",
        "--mde",
        "0.05",
        "--weights",
        "nan,nan",
        mentions=("[nan, nan]",),
    ),
    case(
        "power",
        "--baseline",
        "0.1",
        "--sample-size",
        "99999999999999999999999999",
        mentions=("sample",),
    ),
    case(
        "power",
        "--mean",
        "1e308",
        "--std",
        "1e308",
        "--mde",
        "0.5",
        mentions=("std",),
    ),
    case(
        "power",
        "--mean",
        "1",
        "--std",
        "1e-320",
        "--mde",
        "0.5",
        mentions=("std",),
    ),
    # assign
    case("assign", "good.yaml", mentions=("--unit",)),
    case("assign", "missing.yaml", "--unit", "u", mentions=("missing.yaml",)),
    case("assign", "bad.yaml", "--unit", "u", mentions=("bad.yaml",)),
    case("assign", "good.yaml", "--unit", "u", "--attr", "novalue", mentions=("--attr",)),
    case("assign", "good.yaml", "--unit", "u", "--format", "xml", mentions=("--format",)),
    case("assign", "good.yaml", "--ids", "missing.csv", mentions=("missing.csv",)),
    case("assign", "good.yaml", "--ids", "latin1.yaml", mentions=("UTF-8",)),
    case("assign", "good.yaml", "--ids", "wrongcol.csv", mentions=("user_id",)),
    case("assign", "good.yaml", "--ids", "ids.csv", "--output", "out.xml", mentions=("--output",)),
    case(
        "assign",
        "good.yaml",
        "--ids",
        "ids.csv",
        "--output",
        "no/such/dir/out.csv",
        mentions=("no/such/dir/out.csv",),
    ),
    case(
        "assign",
        "latin1.yaml",
        "--unit",
        "u",
        mentions=("latin1.yaml", "UTF-8"),
    ),
    case(
        "assign",
        "[/].yaml",
        "--unit",
        "u",
        mentions=("[/].yaml",),
    ),
    # stores: unreachable server, bad URLs, unknown ids
    case("db", "status", "--store", UNREACHABLE_PG, mentions=("unavailable",)),
    case("db", "upgrade", "--store", UNREACHABLE_PG, mentions=("unavailable",)),
    case("audit", "verify", "--store", UNREACHABLE_PG, mentions=("unavailable",)),
    case("token", "list", "--store", UNREACHABLE_PG, mentions=("unavailable",)),
    case(
        "token",
        "create",
        "--role",
        "service",
        "--name",
        "x",
        "--store",
        UNREACHABLE_PG,
        mentions=("unavailable",),
    ),
    case("token", "revoke", "abc", "--store", UNREACHABLE_PG, mentions=("unavailable",)),
    case("db", "status", "--store", "notaurl", mentions=("notaurl",)),
    case("db", "status", "--store", "mysql://u@127.0.0.1:1/x", mentions=("mysql",)),
    case("db", "status", "--store", "sqlite:///good.yaml", mentions=("not a database",)),
    case(
        "token",
        "create",
        "--role",
        "wizard",
        "--name",
        "x",
        "--store",
        "sqlite:///store.db",
        mentions=("wizard",),
    ),
    case("token", "revoke", "nosuchid", "--store", "sqlite:///store.db", mentions=("nosuchid",)),
    case(
        "token",
        "create",
        "--role",
        "service",
        "--name",
        "",
        "--store",
        "sqlite:///store.db",
        mentions=("name",),
    ),
    # analyze
    case("analyze", "nosuch", "--store", "sqlite:///store.db", mentions=("nosuch",)),
    case(
        "analyze", "exp", "--store", "sqlite:///store.db", "--phase", "99", mentions=("phase 99",)
    ),
    case(
        "analyze", "exp", "--store", "sqlite:///store.db", "--phase", "abc", mentions=("--phase",)
    ),
    case(
        "analyze", "exp", "--store", "sqlite:///store.db", "--format", "pdf", mentions=("--format",)
    ),
    case(
        "analyze",
        "exp",
        "--store",
        "sqlite:///store.db",
        "--spec",
        "missing.yaml",
        mentions=("missing.yaml",),
    ),
    case("analyze", "exp", "--store", "notaurl", mentions=("notaurl",)),
    case(
        "analyze",
        "exp",
        "--store",
        UNREACHABLE_PG,
        mentions=("unavailable",),
    ),
    case(
        "analyze",
        "exp",
        "--store",
        "sqlite:///fresh.db",
        mentions=("no store here (fresh.db does not exist)", "pass --store"),
    ),
    case(
        "analyze",
        "exp",
        "--store",
        "sqlite:///store.db",
        "--output",
        ".",
        mentions=("cannot write",),
    ),
    case(
        "analyze",
        "exp",
        "--store",
        "sqlite:///store.db",
        "--output",
        "no/such/dir/r.txt",
        mentions=("no/such/dir/r.txt",),
    ),
    case(
        "analyze",
        "exp",
        "--store",
        "sqlite:///store.db",
        "--spec",
        "latin1.yaml",
        mentions=("latin1.yaml",),
    ),
    case(
        "analyze",
        "[/]",
        "--store",
        "sqlite:///store.db",
        mentions=("[/]",),
    ),
    # serve: everything checked before the server starts
    case("serve", "--port", "abc", mentions=("--port",)),
    case("serve", "--config", "missing.yaml", mentions=("missing.yaml",)),
    case(
        "serve",
        "--config",
        "config-bad.yaml",
        "--store",
        "sqlite:///serve.db",
        mentions=("config-bad.yaml",),
    ),
    case(
        "serve",
        "--config",
        "config-unknown.yaml",
        "--store",
        "sqlite:///serve.db",
        mentions=("unknown_field",),
    ),
    case(
        "serve",
        "--config",
        "config-missing-spec.yaml",
        "--store",
        "sqlite:///serve.db",
        mentions=("nosuch.yaml",),
    ),
    case("serve", "--store", "notaurl", mentions=("notaurl",)),
    case("serve", "--store", UNREACHABLE_PG, mentions=("unavailable",)),
    case(
        "serve",
        "--port",
        "99999",
        "--store",
        "sqlite:///serve.db",
        mentions=("port",),
    ),
    case(
        "serve",
        "--workers",
        "0",
        "--store",
        "sqlite:///serve.db",
        mentions=("workers",),
    ),
    case(
        "serve",
        "--config",
        "config-latin1.yaml",
        "--store",
        "sqlite:///serve.db",
        mentions=("config-latin1.yaml",),
    ),
    # demo: argument checks happen before any work
    case("demo", "--users", "10", mentions=("--users",)),
    case("demo", "--days", "0", mentions=("--days",)),
    # no such command or option
    case("nosuchcommand", mentions=("nosuchcommand",)),
    case("power", "--nosuchoption", mentions=("--nosuchoption",)),
]


@pytest.mark.parametrize(("args", "mentions", "code"), IN_PROCESS)
def test_bad_input_gives_one_sentence_and_an_exit_code(
    run: Callable[..., Outcome], args: list[str], mentions: tuple[str, ...], code: int
) -> None:
    assert_one_sentence_error(run(*args), *mentions, code=code)


def test_good_input_succeeds(run: Callable[..., Outcome]) -> None:
    """The control case: the same harness reports success for commands that work."""
    assert run("validate", "good.yaml").code == 0
    outcome = run("analyze", "exp", "--store", "sqlite:///store.db", "--format", "json")
    assert outcome.code == 0, outcome.stderr
    assert '"exp"' in outcome.stdout


# --- subprocesses: serve and models -------------------------------------------------------

SUBPROCESS = {
    "serve --log-level loud": (
        [
            "serve",
            "--no-auth",
            "--port",
            "0",
            "--log-level",
            "loud",
            "--store",
            "sqlite:///serve.db",
        ],
        ("log",),
        None,
    ),
    "serve --config bad model": (
        [
            "serve",
            "--no-auth",
            "--port",
            "0",
            "--config",
            "config-bad-model.yaml",
            "--store",
            "sqlite:///serve.db",
        ],
        ("nosuchmodule",),
        None,  # uvicorn exits 3 when the app cannot start: main() makes it 2
    ),
    "serve --no-auth --store unreachable": (
        ["serve", "--no-auth", "--port", "0", "--store", UNREACHABLE_PG],
        ("unavailable",),
        None,
    ),
    "models verify bad reference": (
        ["models", "verify", "notareference", "--tracking-uri", "sqlite:///mlflow.db"],
        ("notareference",),
        None,
    ),
    "models register corrupt pickle": (
        ["models", "register", "m", "corrupt.pkl", "--tracking-uri", "sqlite:///mlflow.db"],
        ("corrupt.pkl", "not a readable"),
        None,
    ),
    "models register empty pickle": (
        ["models", "register", "m", "empty.pkl", "--tracking-uri", "sqlite:///mlflow.db"],
        ("empty.pkl", "not a readable"),
        None,
    ),
    "models register missing path": (
        ["models", "register", "m", "no-such-model-dir", "--tracking-uri", "sqlite:///mlflow.db"],
        ("no-such-model-dir",),
        None,
    ),
}


@pytest.fixture(scope="module")
def subprocess_outcomes(workdir: Path) -> dict[str, Outcome]:
    """Start every subprocess case at once (each stops by itself) and collect the results."""
    env = _clean_environment()
    started: dict[str, subprocess.Popen[str]] = {}
    for name, (args, _, _) in SUBPROCESS.items():
        folder = workdir / re.sub(r"\W+", "-", name)
        folder.mkdir()
        for file in FILES:
            (folder / file).write_bytes((workdir / file).read_bytes())
        started[name] = subprocess.Popen(
            [str(ABFLOW), *args],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    outcomes: dict[str, Outcome] = {}
    for name, process in started.items():
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            err += "\n(killed after 120 s)"
        outcomes[name] = Outcome(process.returncode, ANSI.sub("", out), ANSI.sub("", err))
    return outcomes


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[xfail(bug)] if bug else [])
        for name, (_, _, bug) in SUBPROCESS.items()
    ],
)
def test_serve_and_models_fail_with_a_sentence(
    subprocess_outcomes: dict[str, Outcome], name: str
) -> None:
    _, mentions, _ = SUBPROCESS[name]
    assert_one_sentence_error(subprocess_outcomes[name], *mentions)
