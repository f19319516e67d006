"""``abflow drift`` end to end on real files: exit codes, formats, --by skew, clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from abflow.cli.main import app
from abflow.drift import detect_drift
from abflow.monitoring.feature_files import read_columns, split_by

RUNNER = CliRunner()


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _sample(n: int, shift: float, seed: int, shares: list[float]) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "amount": round(float(rng.lognormal(3 + shift, 1)), 4),
            "country": str(rng.choice(["FR", "DE", "US"], p=shares)),
            "variant": "champion" if i % 2 else "challenger",
        }
        for i in range(n)
    ]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    ref = _write_csv(tmp_path / "ref.csv", _sample(3000, 0.0, 1, [0.3, 0.3, 0.4]))
    cur = _write_csv(tmp_path / "cur.csv", _sample(3000, 0.4, 2, [0.2, 0.3, 0.5]))
    return ref, cur


def invoke(*args: str) -> tuple[int, str]:
    result = RUNNER.invoke(app, ["drift", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_json_matches_the_library_and_exit_code_says_drift(files: tuple[Path, Path]) -> None:
    ref, cur = files
    code, output = invoke(
        str(ref), str(cur), "--feature", "amount", "--feature", "country", "-f", "json"
    )
    assert code == 1
    payload = orjson.loads(output)
    expected = detect_drift(
        read_columns(ref), read_columns(cur), features=["amount", "country"]
    ).as_dict()
    assert payload == [{"comparison": f"{ref} -> {cur}", **expected}]
    assert payload[0]["drifted"] == ["amount", "country"]


def test_no_drift_exits_zero(files: tuple[Path, Path]) -> None:
    ref, _ = files
    code, output = invoke(str(ref), str(ref))
    assert code == 0
    assert "no drift in 3 features" in output


def test_skew_between_variants(files: tuple[Path, Path]) -> None:
    ref, _ = files
    code, output = invoke(str(ref), "--by", "variant", "--control", "champion", "-f", "markdown")
    assert code == 0
    assert "### variant=champion -> variant=challenger" in output
    assert "| amount | numeric | wasserstein |" in output


def test_table_output_to_file_and_parquet_input(tmp_path: Path, files: tuple[Path, Path]) -> None:
    ref, cur = files
    columns = read_columns(cur)
    parquet = tmp_path / "cur.parquet"
    pq.write_table(pa.table(columns), parquet)
    out = tmp_path / "drift.txt"
    code, output = invoke(str(ref), str(parquet), "-o", str(out))
    assert code == 1
    assert f"wrote {out}" in output
    text = out.read_text()
    assert "DRIFT" in text
    assert "drift in 2 of 3 features: amount, country" in text


def test_json_lines_input(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"x": 1, "c": "a"}\n\n{"x": 2.5}\n')
    assert read_columns(path) == {"x": [1, 2.5], "c": ["a", None]}


def test_split_by_labels_and_drops_missing_keys() -> None:
    groups = split_by({"v": [1.0, 2.0, None, 1.0], "x": [1, 2, 3, 4]}, "v")
    assert groups == {"1": {"x": [1, 4]}, "2": {"x": [2]}}


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda ref, cur: [str(ref)], "give a CURRENT file"),
        (lambda ref, cur: [str(ref), str(cur), "--by", "variant"], "give one file, not two"),
        (lambda ref, cur: [str(ref), "--by", "nope"], "no column 'nope'"),
        (lambda ref, cur: [str(ref), "--by", "variant", "--control", "x"], "no group 'x'"),
        (lambda ref, cur: [str(ref), str(cur), "--control", "x"], "only applies with --by"),
        (lambda ref, cur: [str(ref), str(cur) + ".missing"], "no such file"),
        (lambda ref, cur: [str(ref), str(cur), "--feature", "zzz"], "'zzz' is not in"),
        (lambda ref, cur: [str(ref), str(cur), "--bins", "1"], "bins must be at least 2"),
        (lambda ref, cur: [str(ref), str(ref).replace(".csv", ".xlsx")], "no such file"),
    ],
)
def test_bad_input_exits_two_with_a_sentence(
    files: tuple[Path, Path], make_args: object, message: str
) -> None:
    code, output = invoke(*make_args(*files))  # type: ignore[operator]
    assert code == 2
    assert message in output
    assert "Traceback" not in output


def test_unreadable_files_exit_two(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1\n")
    code, output = invoke(str(bad), str(bad))
    assert code == 2
    assert "bad.csv:2: 1 cells, the header has 2" in output
    other = tmp_path / "x.xlsx"
    other.write_text("")
    code, output = invoke(str(other), str(other))
    assert (code, "unknown file type '.xlsx'" in output) == (2, True)
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    code, output = invoke(str(empty), str(empty))
    assert (code, "holds no rows" in output) == (2, True)


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    """Excel writes CSV with a BOM; the first column must still match the other file's."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfamount,country\n1,a\n2,b\n")
    assert list(read_columns(bom)) == ["amount", "country"]
    lines = tmp_path / "bom.jsonl"
    lines.write_bytes(b'\xef\xbb\xbf{"amount": 1}\n{"amount": 2}\n')
    assert read_columns(lines) == {"amount": [1, 2]}


def test_undecodable_and_odd_files_exit_two(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"amount,country\n1,\xe9\n")
    code, output = invoke(str(latin), str(latin))
    assert (code, "not UTF-8" in output, "Traceback" in output) == (2, True, False)
    nested = tmp_path / "nested.jsonl"
    nested.write_bytes(b'{"a": [1, 2]}\n{"a": [3, 4]}\n')
    code, output = invoke(str(nested), str(nested))
    assert (code, "not numbers" in output) == (2, True)
    huge = tmp_path / "huge.csv"
    huge.write_text("a,b\n1," + "x" * 200_000 + "\n")  # past csv's field size limit
    code, output = invoke(str(huge), str(huge))
    assert (code, "not readable as CSV" in output) == (2, True)
    code, output = invoke(str(tmp_path), str(nested))
    assert (code, "is a directory" in output) == (2, True)


def test_csv_errors_name_the_physical_line(tmp_path: Path) -> None:
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('a,b\n"x\ny",1\n2\n')
    code, output = invoke(str(quoted), str(quoted))
    assert (code, "quoted.csv:4: 1 cells" in output) == (2, True)


def test_an_output_path_that_cannot_be_written_exits_two(files: tuple[Path, Path]) -> None:
    """Exit 1 means drift: a bad -o must not look like one."""
    ref, _ = files
    code, output = invoke(str(ref), str(ref), "-o", str(ref.parent / "no" / "out.json"))
    assert (code, "does not exist" in output) == (2, True)
    code, output = invoke(str(ref), str(ref), "-o", str(ref.parent))
    assert (code, "is a directory" in output) == (2, True)


def test_a_parquet_file_past_the_row_limit_is_refused_like_csv(tmp_path: Path) -> None:
    """Its first rows are no sample (files are often in time order): say so, as for CSV."""
    from abflow.errors import InvalidArgumentError
    from abflow.monitoring.feature_files import MAX_ROWS

    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"x": np.zeros(MAX_ROWS + 1, dtype=np.int8)}), path)
    with pytest.raises(InvalidArgumentError, match="sample the file first"):
        read_columns(path)


def test_js_base_e_gives_evidentlys_distance(files: tuple[Path, Path]) -> None:
    ref, cur = files
    args = [str(ref), str(cur), "--feature", "country", "--method", "js", "-f", "json"]
    _, two = invoke(*args)
    code, e = invoke(*args, "--js-base", "e", "--workers", "2")
    got_two, got_e = orjson.loads(two)[0]["features"][0], orjson.loads(e)[0]["features"][0]
    assert code == (1 if got_e["statistic"] >= 0.1 else 0)
    assert (got_two["js_base"], got_e["js_base"]) == ("2", "e")
    assert got_two["statistic"] / got_e["statistic"] == pytest.approx(1.2011224, rel=1e-6)
    code, output = invoke(str(ref), str(cur), "--js-base", "10")
    assert code == 2
    assert "--js-base" in output


@pytest.mark.parametrize("output_format", ["table", "table-file", "markdown"])
def test_feature_names_holding_markup_are_shown_as_they_are(
    tmp_path: Path, output_format: str
) -> None:
    """Column names are the user's data: Rich markup in one neither crashes the command
    (``[/]`` closes nothing) nor changes what it prints, and Markdown shows it as text."""
    names = ["[/]", "[bold red]feat[/]", "[link=http://evil.example]clickme[/link]", "![p](x)"]
    rng = np.random.default_rng(3)
    ref = _write_csv(
        tmp_path / "ref.csv", [{n: float(rng.normal()) for n in names} for _ in range(300)]
    )
    cur = _write_csv(
        tmp_path / "cur.csv", [{n: float(rng.normal(2)) for n in names} for _ in range(300)]
    )
    args = [str(ref), str(cur)]
    if output_format == "table-file":
        args += ["-o", str(tmp_path / "drift.txt")]
    elif output_format == "markdown":
        args += ["-f", "markdown"]
    code, output = invoke(*args)
    assert code == 1, output  # drift found: the answer, not an error
    shown = (tmp_path / "drift.txt").read_text() if output_format == "table-file" else output
    if output_format == "markdown":
        from markdown_it import MarkdownIt

        tokens = MarkdownIt("commonmark", {"html": True}).enable("table").parse(shown)
        cells = [t.content for t in tokens if t.type == "inline"]
        kinds = {c.type for t in tokens for c in t.children or []}
        assert not kinds & {"image", "link_open", "html_inline"}
        shown = "\n".join(cells).replace("\\", "")
    for name in names:
        assert name in shown, name
