"""Small things a daily user meets (issue #15, item 10): each through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import abflow
from abflow.cli.main import main
from abflow.store import EventStore


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"abflow {abflow.__version__}\n"


def test_version_imports_no_command() -> None:
    code = (
        "import sys\n"
        "from abflow.cli.main import main\n"
        "try:\n    main(['--version'])\n"
        "except SystemExit as e:\n"
        "    heavy = [m for m in ('sqlalchemy', 'numpy', 'scipy', 'mlflow') if m in sys.modules]\n"
        "    print(e.code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.splitlines()[-1] == "0 []"


SPEC_YAML = """\
# the operator's own spec: python: models are allowed from the command line
key: checkout-ranker
unit: user_id
variants:
  - name: control
    model: python:abflow.serving.demo_models:champion
  - name: treatment
    model: python:abflow.serving.demo_models:challenger
weights: [0.5, 0.5]
"""


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, captured.out, " ".join(captured.err.split())


@pytest.fixture
def registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.delenv("ABFLOW_STORE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code, out, _ = _run(["experiments", "register", str(spec), "--store", url], capsys)
    assert (code, out) == (0, "checkout-ranker: registered version 1 (new phase 1)\n")
    return url


def test_experiments_register_is_idempotent_and_audited(
    registered: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    code, out, _ = _run(["experiments", "register", str(spec), "--store", registered], capsys)
    assert (code, out) == (0, "checkout-ranker: unchanged, version 1\n")
    spec.write_text(SPEC_YAML.replace("[0.5, 0.5]", "[0.8, 0.2]"), encoding="utf-8")
    argv = ["experiments", "register", str(spec), "--store", registered, "--actor", "ops:ana"]
    code, out, _ = _run(argv, capsys)
    assert (code, out) == (0, "checkout-ranker: registered version 2 (new phase 2)\n")
    with EventStore.open(registered) as opened:
        entries = opened.audit_entries("checkout-ranker")
        phases = opened.phases("checkout-ranker")
    assert [(e.action, e.payload["version"]) for e in entries] == [
        ("experiment.registered", 1),
        ("experiment.registered", 2),
    ]
    assert entries[1].actor == "ops:ana"
    assert [p.weights for p in phases] == [(0.5, 0.5), (0.8, 0.2)]


def test_experiments_list_and_show(registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["experiments", "list", "--store", registered, "-f", "json"], capsys)
    assert code == 0
    [row] = orjson.loads(out)
    assert (row["key"], row["version"], row["phase"]) == ("checkout-ranker", 1, 1)
    assert row["variants"] == ["control", "treatment"]
    code, out, _ = _run(["experiments", "show", "checkout-ranker", "--store", registered], capsys)
    assert code == 0
    assert "checkout-ranker: version 1" in out
    assert "50% / 50%" in out
    assert "model: python:abflow.serving.demo_models:challenger" in out
    code, out, _ = _run(
        ["experiments", "show", "checkout-ranker", "--store", registered, "-f", "json"], capsys
    )
    data = orjson.loads(out)
    assert [p["weights"] for p in data["phases"]] == [[0.5, 0.5]]
    assert data["spec"]["key"] == "checkout-ranker"


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["analyze", "checkout-rankr"], " (or pass --spec FILE)"),
        (["gate", "chekout-ranker"], ""),
        (["rollout", "status", "checkout-ranker2"], ""),
        (["rollout", "tick", "checkout_ranker"], ""),
        (["experiments", "show", "checkout-rnker"], None),
    ],
    ids=lambda a: a[0] if isinstance(a, list) else "",
)
def test_mistyped_key_suggests_the_stored_one(
    registered: str, argv: list[str], extra: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run([*argv, "--store", registered], capsys)
    assert (code, out) == (2, "")
    typo = argv[-1]
    expected = f"error: no experiment {typo!r} in the store (did you mean 'checkout-ranker'?)"
    if extra is not None:
        expected += f"; register its spec with `abflow experiments register FILE`{extra}"
    assert err == expected
    assert "--spec" not in err or argv[0] == "analyze"  # gate has no --spec option


def test_unknown_key_without_a_close_match_suggests_nothing(
    registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["gate", "zzz", "--store", registered], capsys)
    assert code == 2
    assert err == (
        "error: no experiment 'zzz' in the store; register its spec with "
        "`abflow experiments register FILE`"
    )


def test_experiments_register_help_says_code_references_are_allowed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["experiments", "register", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert "file: and python: references are allowed here" in flat


def test_audit_log_newest_last_with_short_payloads(
    registered: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML.replace("[0.5, 0.5]", "[0.8, 0.2]"), encoding="utf-8")
    argv = ["experiments", "register", str(spec), "--store", registered, "--actor", "ops:ana"]
    assert _run(argv, capsys)[0] == 0
    with EventStore.open(registered) as opened:
        opened.append_audit("ops:bo", "note", {"why": "x" * 200})

    code, out, _ = _run(["audit", "log", "--store", registered, "-f", "json"], capsys)
    assert code == 0
    rows = orjson.loads(out)
    assert [(r["seq"], r["actor"], r["action"]) for r in rows] == [
        (1, rows[0]["actor"], "experiment.registered"),
        (2, "ops:ana", "experiment.registered"),
        (3, "ops:bo", "note"),
    ]
    assert rows[0]["ts"] <= rows[1]["ts"] <= rows[2]["ts"]
    assert rows[2]["payload"] == {"why": "x" * 200}  # json keeps the payload whole

    code, out, _ = _run(["audit", "log", "checkout-ranker", "--store", registered], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert flat.index("version=1") < flat.index("version=2")  # newest last
    assert "ops:bo" not in out  # only this experiment's entries
    code, out, _ = _run(["audit", "log", "--store", registered, "--last", "1"], capsys)
    assert "ops:bo" in out
    assert "x" * 24 not in out  # the table cuts long values
    assert "ops:ana" not in out


def test_short_payload_drops_empty_values_and_cuts_long_ones() -> None:
    from abflow.cli.audit import short_payload

    payload = {"reason": "", "phase": 2, "spec_hash": "ab" * 32, "steps": [1, 2]}
    assert short_payload(payload) == "phase=2, spec_hash=abababababababababababa…, steps=[1,2]"
    many = {key: key * 20 for key in "abcde"}  # 5 x 22 characters and 4 separators: 118
    cut = short_payload(many)
    assert (len(cut), cut[-1]) == (80, "…")


def test_tick_help_states_the_actor_tick_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("USER", "ana")
    monkeypatch.setenv("LOGNAME", "ana")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC_YAML.replace("[0.5, 0.5]", "[1.0, 0.0]")
        + "rollout:\n  steps:\n    - {traffic: 0.5, min_duration_hours: 1}\n",
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert _run(["experiments", "register", str(spec), "--store", url], capsys)[0] == 0
    code, out, err = _run(["rollout", "tick", "checkout-ranker", "--store", url], capsys)
    assert code == 0, (out, err)
    with EventStore.open(url) as opened:
        actors = {e.actor for e in opened.audit_entries("checkout-ranker") if "rollout" in e.action}
    assert actors == {"controller:ana"}
    code, out, _ = _run(["rollout", "tick", "--help"], capsys)
    assert "(default: controller:$USER)" in " ".join(out.split())


STAGED = """\
key: staged
variants:
  - {name: control, model: "models:/m/1"}
  - {name: treatment, model: "models:/m/2"}
weights: [0.5, 0.5]
coverage: 2
metrics:
  - {name: caught, kind: recall, role: primary}
  - {name: fpr, kind: false_positive_rate, role: guardrail}
rollout:
  guardrails: [fpr, latency]
  steps:
    - {traffic: 0.5, min_duration_hours: 1}
"""


def _problems(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(path)])
    assert exited.value.code == 1
    lines = capsys.readouterr().err.splitlines()[1:]
    return [line.strip().split(":")[0] for line in lines]


def test_validate_lists_every_problem_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "2000")
    spec = tmp_path / "staged.yaml"
    spec.write_text(STAGED, encoding="utf-8")
    # a field error, a cross-field error and what registration would refuse, all at once
    assert _problems(spec, capsys) == ["coverage", "rollout.guardrails[1]", "weights"]
    # a broken metrics list hides no other problem and invents none about guardrails
    spec.write_text(STAGED.replace("kind: false_positive_rate", "kind: fpr"), encoding="utf-8")
    assert _problems(spec, capsys) == ["coverage", "metrics[1].kind", "weights"]
    spec.write_text(STAGED.replace("coverage: 2", "coverage: 1"), encoding="utf-8")
    assert _problems(spec, capsys) == ["rollout.guardrails[1]", "weights"]


RAMP = """\
key: ramp
variants:
  - {name: control, model: "models:/m/1"}
  - {name: treatment, model: "models:/m/2"}
coverage: 0.5
metrics:
  - {name: caught, kind: recall, role: primary}
  - {name: fpr, kind: false_positive_rate, role: guardrail, direction: decrease, margin: 0.01}
rollout:
  guardrails: [fpr]
  steps:
    - {traffic: 0.5, min_duration_hours: 1}
"""


@pytest.mark.parametrize(
    ("edit", "refusal"),
    [
        (lambda text: text, "coverage 0.5"),
        (
            lambda text: text.replace("coverage: 0.5", "coverage: 1").replace(
                "guardrails: [fpr]", "guardrails: [caught]"
            ),
            "'caught', which is a primary metric",
        ),
    ],
)
def test_validate_fails_a_plan_the_rollout_would_refuse_at_its_first_tick(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[str], str],
    refusal: str,
) -> None:
    """The spec parses and registers, but `abflow rollout tick` refuses it: a check in CI says
    so now. With sticky buckets a ramp below full coverage is sound, and the file passes."""
    monkeypatch.setenv("COLUMNS", "2000")
    spec = tmp_path / "ramp.yaml"
    spec.write_text(edit(RAMP), encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(spec)])
    assert exited.value.code == 1
    assert refusal in capsys.readouterr().err
    if "coverage" in refusal:
        spec.write_text(RAMP + "sticky: {bucket_version: 1}\n", encoding="utf-8")
        with pytest.raises(SystemExit) as exited:
            main(["validate", str(spec)])
        assert exited.value.code == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["demo", "--seed", "-1"], "--seed"),
        (["demo", "--seed", str(2**32)], "--seed"),
        (["k8s", "render", "--image", "x:1", "--config", "{config}"], "experiments: a list"),
    ],
)
def test_a_bad_value_is_a_sentence_not_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    """Each printed "unexpected TypeError" or the simulator's own error for a seed it could
    not take, after training the demo's models."""
    config = tmp_path / "gateway.yaml"
    config.write_text("experiments: 5\n")
    with pytest.raises(SystemExit) as exited:
        main([arg.format(config=config) for arg in args])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    output = " ".join((captured.err + captured.out).split())
    assert said in output
    assert "unexpected" not in output


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_is_refused_since_nothing_would_be_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML)
    with pytest.raises(SystemExit) as exited:
        main(["experiments", "register", str(spec), "--store", url])
    assert exited.value.code == 2
    said = " ".join(capsys.readouterr().err.replace("│", " ").split())  # Rich's box
    assert "keeps nothing after this command" in said


def test_analyze_refuses_a_spec_file_of_another_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The positional key was ignored: the spec file's experiment was analysed instead."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    EventStore.open(url, upgrade=True).close()
    with pytest.raises(SystemExit) as exited:
        main(["analyze", "fraud-model-v2", "--spec", str(spec), "--store", url])
    assert exited.value.code == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "is the spec of 'checkout-ranker', not of 'fraud-model-v2'" in said


def test_power_says_a_sample_size_must_be_whole(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["power", "--baseline", "0.1", "--sample-size", "1.5"])
    assert exited.value.code == 2
    assert "comma-separated list of whole numbers, got '1.5'" in capsys.readouterr().err


def test_power_refuses_a_proportion_formula_for_a_mean(capsys: pytest.CaptureFixture[str]) -> None:
    """--variance pooled was ignored for a mean, and the JSON still said it was used."""
    with pytest.raises(SystemExit) as exited:
        main(["power", "--mean", "3", "--std", "1", "--mde", "0.05", "--variance", "pooled"])
    assert exited.value.code == 2
    assert "--variance applies to --baseline" in capsys.readouterr().err


def test_text_that_looks_like_an_emoji_code_is_printed_as_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rich turned ":fire:" into 🔥 and "python:m:b" into "pythonⓂb", in JSON too: exported
    audit entries no longer matched what was stored and hashed."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML.replace("key: checkout-ranker", "key: k\nname: 'INC-1:x:2 :fire:'"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with pytest.raises(SystemExit):
        main(["experiments", "register", str(spec), "--store", url])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["experiments", "show", "k", "--store", url, "--format", "json"])
    assert exited.value.code == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["spec"]["name"] == "INC-1:x:2 :fire:"


def test_a_tick_on_a_mistyped_store_path_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "newdir" / "typo.db"
    with pytest.raises(SystemExit) as exited:
        main(["rollout", "tick", "rk", "--store", f"sqlite:///{typo}"])
    assert exited.value.code == 2
    assert not typo.parent.exists()
