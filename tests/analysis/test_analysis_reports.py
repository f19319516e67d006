"""Reports render the same result: JSON is stable, Markdown is a table, HTML is self-contained."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import orjson
import pytest
import typer
from analysis_support import SPEC, START, register, simulate, write
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from abflow.analysis import (
    ExperimentResult,
    analyze,
    render_html,
    render_json,
    render_markdown,
    render_table,
)
from abflow.cli import analyze as analyze_command
from abflow.spec import parse_experiment

TOP_LEVEL_KEYS = {
    "alpha", "breakdowns", "correction", "decision", "experiment_key", "latency", "method",
    "metrics", "mixed_units", "monitoring", "name", "phase", "phases", "progress", "provenance",
    "sampled_features", "schema_version", "shadow", "srm", "variants", "warnings",
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ExperimentResult]:
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'events.db'}"
    write(url, simulate(np.random.default_rng(9), units=400))
    phases = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]
    register(url, parse_experiment(SPEC), phases)
    return url, analyze(url, "checkout", dimensions=["country"])


def test_json_is_stable_and_strict(store: Any) -> None:
    _, result = store
    text = render_json(result)
    data = orjson.loads(text)
    assert set(data) == TOP_LEVEL_KEYS
    assert "NaN" not in text
    assert "Infinity" not in text
    metric = data["metrics"][0]
    assert set(metric["comparisons"][0]) >= {"effect", "ci_low", "ci_high", "p_value", "outcome"}
    assert data["provenance"]["spec_hash"] == result.provenance.spec_hash
    assert render_json(result) == text  # deterministic


def test_markdown_has_one_row_per_comparison(store: Any) -> None:
    _, result = store
    text = render_markdown(result)
    lines = text.splitlines()
    for metric in result.metrics:
        rows = [line for line in lines if line.startswith(f"| {metric.name} | {metric.role} |")]
        assert len(rows) == len(metric.comparisons)
    header = next(line for line in lines if line.startswith("| metric |"))
    assert all(row.count("|") == header.count("|") for row in lines if row.startswith("| conv"))
    assert result.decision.summary in text


def test_table_names_the_verdict_and_every_metric(store: Any) -> None:
    _, result = store
    text = render_table(result)
    assert "Verdict" in text
    for metric in result.metrics:
        assert metric.name in text


def test_html_is_self_contained_with_plots(store: Any) -> None:
    _, result = store
    html = render_html(result)
    assert html.startswith("<!doctype html>")
    assert "<script" not in html.lower()
    links = re.findall(r"(?:src|href)=\"([^\"]+)\"", html)
    assert links == []
    external = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert external <= {"http://www.w3.org/2000/svg"}
    assert html.count("<svg") >= 4  # effects, timeline, assignment, latency
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.DOTALL):
        root = ElementTree.fromstring(svg)  # every chart is well-formed XML
        assert root.find("{http://www.w3.org/2000/svg}title") is not None
    assert result.provenance.spec_hash in html


def test_cli_writes_each_format(store: Any, tmp_path: Path) -> None:
    url, result = store
    app = typer.Typer()
    analyze_command.register(app)
    runner = CliRunner()
    for fmt in ("json", "markdown", "html", "table"):
        target = tmp_path / f"report.{fmt}"
        outcome = runner.invoke(
            app, ["checkout", "--store", url, "--format", fmt, "--output", str(target)]
        )
        assert outcome.exit_code == 0, outcome.output
        assert target.stat().st_size > 500
    data = orjson.loads((tmp_path / "report.json").read_text())
    assert data["variants"][0]["units"] == result.variants[0].units
    printed = runner.invoke(app, ["checkout", "--store", url, "--format", "json"])
    assert orjson.loads(printed.stdout)["experiment_key"] == "checkout"


SCRIPT = '<script>alert("x")</script>'


def test_html_shows_names_holding_markup_as_text(store: Any) -> None:
    """Keys, names, notes and segment values (request attributes) are text, never markup."""
    _, result = store
    hostile = dataclasses.replace(
        result,
        experiment_key=SCRIPT,
        name=SCRIPT,
        metrics=[dataclasses.replace(m, name=m.name + SCRIPT, note=SCRIPT) for m in result.metrics],
        breakdowns=[
            dataclasses.replace(b, value=SCRIPT, metric=b.metric + SCRIPT)
            for b in result.breakdowns
        ],
        warnings=[SCRIPT],
        decision=dataclasses.replace(result.decision, summary=SCRIPT, reasons=[SCRIPT]),
        provenance=dataclasses.replace(result.provenance, experiment_key=SCRIPT, store=SCRIPT),
    )
    html = render_html(hostile)
    assert "<script" not in html.lower()
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    comparisons = sum(len(m.comparisons) for m in result.metrics)
    in_text = html.split("<svg")[0].count(escaped) + sum(
        part.split("</svg>", 1)[1].count(escaped) for part in html.split("<svg")[1:]
    )
    headings = len(re.findall(r"<h3>[^<]*&lt;script", html))  # timelines: not secondaries
    sizes = (len(result.metrics), comparisons, len(result.breakdowns), headings)
    assert sizes == (11, 11, 12, 2)
    # title, heading, meta, summary, reason, warning, provenance experiment and store, the
    # command line; per metric its note (name and text), per comparison its row, per breakdown
    # row its segment and metric, per timeline its heading
    assert in_text == 9 + 2 * 11 + 11 + 2 * 12 + 2
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.DOTALL):
        ElementTree.fromstring(svg)  # labels holding markup leave every chart well-formed
    assert render_html(result).count("&lt;script") == 0


def test_the_template_ships_in_the_package_with_autoescape() -> None:
    from abflow.analysis import report_html

    template = resources.files("abflow.analysis") / "templates" / report_html.TEMPLATE
    assert template.is_file()
    environment = report_html._environment()
    assert environment.autoescape is True
    assert environment.get_template(report_html.TEMPLATE).filename == str(template)


def test_a_hostile_spec_name_and_warning_stay_text_in_the_report(store: Any) -> None:
    """The report's own markup is still markup; the spec's name and a warning quoting a
    request's feature name are text."""
    _, result = store
    name = "![p](http://evil/p.png) <img src=x onerror=alert(1)>\n## ✅ looks shipped"
    hostile = dataclasses.replace(result, name=name, warnings=["feature </script> | x"])
    tokens = (
        MarkdownIt("commonmark", {"html": True}).enable("table").parse(render_markdown(hostile))
    )
    children = [child for token in tokens for child in token.children or []]
    assert not {child.type for child in children} & {"image", "link_open"}
    tags = {child.content for child in children if child.type == "html_inline"}
    assert tags == {"<sub>", "</sub>"}  # the report's own footer, and nothing else
    assert not any(token.type == "html_block" for token in tokens)
    headings = [t for t in tokens if t.type == "heading_open" and t.tag == "h2"]
    assert len(headings) == 1
    inline = [t.content for t in tokens if t.type == "inline"]
    assert any("looks shipped" in text and "evil" in text for text in inline)
