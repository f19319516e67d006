"""``abflow assign``: the command prints what the library decides, and fails in one sentence."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from abflow.cli.main import app
from abflow.routing import assign, assign_batch
from abflow.spec import ExperimentSpec, load_experiment

SPEC = {
    "key": "cli-exp",
    "variants": [
        {"name": "control", "model": "models:/m@champion"},
        {"name": "treatment", "model": "models:/m@challenger"},
    ],
    "weights": [0.3, 0.7],
    "coverage": 0.9,
    "forced": {"vip": "treatment"},
}


def _run(*args: str) -> Result:
    return CliRunner().invoke(app, ["assign", *args])


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return path


@pytest.fixture
def spec(spec_file: Path) -> ExperimentSpec:
    return load_experiment(spec_file)


def test_one_unit_as_json(spec_file: Path, spec: ExperimentSpec) -> None:
    for unit in ("user-1", "user-2", "vip", "日本"):
        result = _run(str(spec_file), "--unit", unit, "--format", "json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        expected = assign(spec, {"user_id": unit})
        assert payload == {
            "experiment": "cli-exp",
            "unit": unit,
            "variant": expected.variant,
            "model": spec.variants[expected.index].model if expected.index >= 0 else None,
            "index": expected.index,
            "bucket": expected.bucket,
            "in_experiment": expected.in_experiment,
            "reason": expected.reason,
        }


def test_one_unit_as_table(spec_file: Path, spec: ExperimentSpec) -> None:
    result = _run(str(spec_file), "--unit", "user-7")
    assert result.exit_code == 0, result.output
    expected = assign(spec, {"user_id": "user-7"})
    assert expected.reason in result.stdout
    assert str(expected.bucket) in result.stdout


def test_attributes_feed_the_condition(tmp_path: Path) -> None:
    path = tmp_path / "targeted.json"
    path.write_text(json.dumps({**SPEC, "condition": {"age": {"$gte": 18}}}), encoding="utf-8")
    adult = json.loads(_run(str(path), "-u", "u1", "-a", "age=30", "-f", "json").stdout)
    child = json.loads(_run(str(path), "-u", "u1", "-a", "age=12", "-f", "json").stdout)
    assert adult["reason"] in ("assigned", "coverage")
    assert child["reason"] == "condition"


def test_file_of_ids_prints_counts(spec_file: Path, spec: ExperimentSpec, tmp_path: Path) -> None:
    ids = [f"user-{i}" for i in range(2000)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n\n", encoding="utf-8")  # blank lines are skipped
    result = _run(str(spec_file), "--ids", str(ids_file), "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    singles = [assign(spec, {"user_id": u}) for u in ids]
    assert summary["units"] == len(ids)
    assert summary["variants"] == {
        name: sum(s.variant == name for s in singles) for name in spec.variant_names
    }
    assert sum(summary["reasons"].values()) == len(ids)


def test_csv_in_csv_out(tmp_path: Path) -> None:
    spec_path = tmp_path / "targeted.yaml"
    spec_path.write_text(yaml.safe_dump({**SPEC, "condition": {"country": "fr"}}), "utf-8")
    spec = load_experiment(spec_path)
    ids_file = tmp_path / "units.csv"
    with ids_file.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["country", "user_id"])
        writer.writerows([["fr" if i % 3 else "de", f"u{i}"] for i in range(300)])
    out = tmp_path / "out.csv"
    result = _run(str(spec_path), "--ids", str(ids_file), "--output", str(out))
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 300
    for i, row in enumerate(rows):
        expected = assign(spec, {"user_id": f"u{i}", "country": "fr" if i % 3 else "de"})
        assert row["unit"] == f"u{i}"
        assert row["reason"] == expected.reason
        assert int(row["index"]) == expected.index
        assert row["bucket"] == ("" if expected.bucket is None else str(expected.bucket))


def test_json_output_file(spec_file: Path, spec: ExperimentSpec, tmp_path: Path) -> None:
    ids = ["a", "b", "vip", "c"]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids), encoding="utf-8")
    out = tmp_path / "out.json"
    assert _run(str(spec_file), "--ids", str(ids_file), "-o", str(out)).exit_code == 0
    payload = json.loads(out.read_text(encoding="utf-8"))
    batch = assign_batch(spec, ids)
    assert [r["index"] for r in payload["assignments"]] == batch.index.tolist()
    assert payload["assignments"][2]["reason"] == "forced"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "give exactly one of --unit ID or --ids FILE"),
        (["--unit", "a", "--ids", "x.txt"], 2, "give exactly one of"),
        (["--unit", "a", "--attr", "novalue"], 2, "--attr takes key=value"),
        (["--unit", "a", "--format", "xml"], 2, "--format must be table or json"),
        (["--unit", "a", "--output", "o.csv"], 2, "--output needs --ids"),
        (["--ids", "missing.txt"], 2, "cannot read missing.txt"),
    ],
)
def test_usage_errors(spec_file: Path, args: list[str], code: int, message: str) -> None:
    result = _run(str(spec_file), *args)
    assert result.exit_code == code
    assert isinstance(result.exception, SystemExit)  # a sentence, never a traceback
    assert result.stderr.startswith("error: ")
    assert message in " ".join(result.stderr.split())


def test_file_errors(spec_file: Path, tmp_path: Path) -> None:
    bad_csv = tmp_path / "units.csv"
    bad_csv.write_text("customer\nc1\n", encoding="utf-8")
    result = _run(str(spec_file), "--ids", str(bad_csv))
    assert result.exit_code == 2
    assert "has no column 'user_id'" in result.stderr

    targeted = tmp_path / "targeted.yaml"
    targeted.write_text(yaml.safe_dump({**SPEC, "condition": {"country": "fr"}}), "utf-8")
    plain = tmp_path / "ids.txt"
    plain.write_text("a\n", encoding="utf-8")
    result = _run(str(targeted), "--ids", str(plain))
    assert result.exit_code == 2
    assert "has a targeting condition" in result.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**SPEC, "weights": [0.5, 0.6]}), "utf-8")
    result = _run(str(broken), "--unit", "a")
    assert result.exit_code == 2
    assert "weights sum to 1.1" in result.stderr


def test_help_teaches_with_an_example() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "abflow assign examples/fraud.yaml --unit user-42" in text
    assert "--ids" in text


def test_groups_file_feeds_in_group(tmp_path: Path) -> None:
    spec_path = tmp_path / "grouped.yaml"
    condition = {"user_id": {"$inGroup": "beta"}}
    spec_path.write_text(yaml.safe_dump({**SPEC, "coverage": 1.0, "condition": condition}))
    groups = tmp_path / "groups.yaml"
    groups.write_text(yaml.safe_dump({"beta": [f"u{i}" for i in range(0, 300, 3)]}), "utf-8")
    member = json.loads(
        _run(str(spec_path), "-u", "u3", "--groups", str(groups), "-f", "json").stdout
    )
    other = json.loads(
        _run(str(spec_path), "-u", "u4", "--groups", str(groups), "-f", "json").stdout
    )
    assert (member["in_experiment"], other["reason"]) == (True, "condition")
    ids_file = tmp_path / "units.csv"
    ids_file.write_text("user_id\n" + "".join(f"u{i}\n" for i in range(300)), "utf-8")
    result = _run(str(spec_path), "--ids", str(ids_file), "--groups", str(groups), "-f", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["reasons"] == {"assigned": 100, "condition": 200}
    bad = tmp_path / "bad.yaml"
    bad.write_text("beta: not-a-list\n", "utf-8")
    refused = _run(str(spec_path), "-u", "u3", "--groups", str(bad))
    assert refused.exit_code == 2
    assert "--groups" in refused.output
    assert "must map each group id to a list of members" in refused.output


@pytest.mark.parametrize(
    ("extra", "needs"),
    [
        ({"condition": {"country": "fr"}}, "a targeting condition"),
        (
            {"filters": [{"attribute": "company", "seed": "s", "ranges": [[0.0, 0.5]]}]},
            "a filter on another attribute",
        ),
    ],
)
def test_a_plain_id_list_for_a_spec_that_reads_attributes_fails_with_a_hint(
    tmp_path: Path, extra: dict[str, object], needs: str
) -> None:
    spec_path = tmp_path / "targeted.yaml"
    spec_path.write_text(yaml.safe_dump({**SPEC, **extra}), "utf-8")
    ids_file = tmp_path / "units.txt"
    ids_file.write_text("u1\nu2\n", encoding="utf-8")
    result = _run(str(spec_path), "--ids", str(ids_file))
    assert result.exit_code == 2
    assert f"has {needs}; give --ids a .csv file" in " ".join(result.output.split())


def test_a_filter_on_the_unit_needs_no_attribute_file(tmp_path: Path) -> None:
    unit_filter = {"seed": "slice", "ranges": [[0.0, 0.5]]}
    spec_path = tmp_path / "sliced.yaml"
    spec_path.write_text(yaml.safe_dump({**SPEC, "filters": [unit_filter]}), "utf-8")
    ids_file = tmp_path / "units.txt"
    ids_file.write_text("".join(f"u{i}\n" for i in range(400)), encoding="utf-8")
    result = _run(str(spec_path), "--ids", str(ids_file), "--format", "json")
    assert result.exit_code == 0, result.output
    spec = load_experiment(spec_path)
    expected = [assign(spec, {"user_id": f"u{i}"}).reason for i in range(400)]
    summary = json.loads(result.output)
    assert summary["reasons"]["filters"] == expected.count("filters") > 100
