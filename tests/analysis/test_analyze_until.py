"""``abflow analyze --until TIME``: the analysis of the events before a cutoff, so that a
report or an audited decision can be re-run later on the data it saw."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from analysis_support import Events, register, write
from typer.testing import CliRunner

from abflow.analysis import AnalysisOptions, analyze, render_json
from abflow.cli.main import app, main
from abflow.events.sink import exposure_row, outcome_row
from abflow.spec import parse_experiment
from abflow.store import EventStore
from specs import two_arm_spec

T0 = 1_790_000_000.0
CUT = T0 + 500.0
CONVERTED = {"name": "converted", "kind": "conversion", "event": "purchase", "role": "primary"}


CONVERTS = np.random.default_rng(11).random(1000) < 0.3
"""Which of the 1,000 units convert."""


def _store(tmp_path: Path) -> str:
    """Phase 1 opened at T0; unit ``i`` exposed at T0 + i (the arms in turn) and, if it
    converts, its purchase a second later."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url, clock=lambda: T0) as store:
        store.register_experiment(two_arm_spec(metrics=[CONVERTED]))
        units = [f"u{i}" for i in range(1000)]
        store.write_events(
            "exposure",
            [
                exposure_row(
                    experiment_key="checkout",
                    phase=1,
                    unit_id=unit,
                    variant=("control", "treatment")[i % 2],
                    attributes=None,
                    ts=T0 + i,
                )
                for i, unit in enumerate(units)
            ],
        )
        store.write_events(
            "outcome",
            [
                outcome_row(
                    unit_id=unit,
                    name="purchase",
                    value=1.0,
                    request_id=None,
                    experiment_key="checkout",
                    ts=T0 + i + 1,
                )
                for i, unit in enumerate(units)
                if CONVERTS[i]
            ],
        )
    return url


def _report(url: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["analyze", "checkout", "--store", url, "--format", "json", *args]
    )
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = orjson.loads(result.stdout)
    for varying in ("generated_at", "store"):
        report["provenance"].pop(varying)
    return report


def test_until_counts_only_the_events_before_the_cutoff(tmp_path: Path) -> None:
    url = _store(tmp_path)
    cut = _report(url, "--until", str(CUT))
    direct = orjson.loads(render_json(analyze(url, "checkout", AnalysisOptions(until=CUT))))
    for varying in ("generated_at", "store"):
        direct["provenance"].pop(varying)
    assert cut == direct
    # Exposures at T0 + 0 … T0 + 499 are before the cutoff: 500 units, 250 per arm.
    assert cut["provenance"]["rows"]["units"] == 500
    assert [v["units"] for v in cut["variants"]] == [250, 250]
    assert cut["provenance"]["window_end"] == CUT

    # Unit 498's purchase (at T0 + 499) is before the cutoff; unit 499's (at T0 + 500) is not.
    rates = [CONVERTS[0:499:2].mean(), CONVERTS[1:499:2].sum() / 250]
    values = next(m for m in cut["metrics"] if m["name"] == "converted")["values"]
    assert [v["value"] for v in values] == pytest.approx(rates, rel=1e-12)

    everything = _report(url)
    assert everything["provenance"]["rows"]["units"] == 1000
    values = next(m for m in everything["metrics"] if m["name"] == "converted")["values"]
    assert [v["value"] for v in values] == pytest.approx(
        [CONVERTS[0::2].mean(), CONVERTS[1::2].mean()], rel=1e-12
    )


def test_an_iso_time_is_the_same_cutoff_as_its_epoch_seconds(tmp_path: Path) -> None:
    url = _store(tmp_path)
    iso_utc = dt.datetime.fromtimestamp(CUT, tz=dt.UTC).replace(tzinfo=None).isoformat()
    shifted = dt.datetime.fromtimestamp(CUT, tz=dt.timezone(dt.timedelta(hours=2))).isoformat()
    epoch = _report(url, "--until", str(CUT))
    assert _report(url, "--until", iso_utc) == epoch  # no offset: UTC
    assert _report(url, "--until", shifted) == epoch
    assert _report(url, "--until", iso_utc + "Z") == epoch


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("yesterday", "is neither epoch seconds nor an ISO time"),
        ("2026-13-01", "is neither epoch seconds nor an ISO time"),
        ("nan", "is not a time in the years 1970 to 9999"),
        ("inf", "is not a time in the years 1970 to 9999"),
        ("1e300", "is not a time in the years 1970 to 9999"),
        ("-1", "is not a time in the years 1970 to 9999"),
        ("0001-01-01", "is not a time in the years 1970 to 9999"),
    ],
)
def test_a_time_that_is_no_time_is_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, says: str
) -> None:
    url = _store(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["analyze", "checkout", "--store", url, "--until", value])
    printed = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2
    assert f"--until: {value!r} {says}" in printed
    assert "Traceback" not in printed


def _exposure(unit: str, variant: str, ts: float, **attributes: Any) -> dict[str, Any]:
    return {"event_id": f"x-{unit}-{ts}", "ts": ts, "experiment_key": "late", "phase": 1,
            "unit_id": unit, "variant": variant,
            "attributes_json": orjson.dumps(attributes).decode()}  # fmt: skip


def _prediction(
    request: str, unit: str, variant: str, ts: float, score: float, *, shadow: bool = False
) -> dict[str, Any]:
    return {"event_id": f"p-{request}-{shadow}", "ts": ts, "request_id": request,
            "experiment_key": "late", "phase": 1, "unit_id": unit, "variant": variant,
            "model_version": variant, "latency_ms": 5.0, "is_fallback": False,
            "is_shadow": shadow, "score": score, "output_json": None,
            "features_hash": "h" if shadow or ts < CUT else "other", "error": None}  # fmt: skip


def _outcome(
    event_id: str, unit: str, name: str, value: float, ts: float, request: str | None = None
) -> dict[str, Any]:
    return {"event_id": event_id, "ts": ts, "unit_id": unit, "name": name, "value": value,
            "request_id": request, "experiment_key": "late" if request else None}  # fmt: skip


def test_a_cutoff_reads_the_store_as_it_was_then(backend_url: str, tmp_path: Path) -> None:
    """Every event stamped at or after the cutoff is left out, including those that count
    after the phase's window otherwise: labels of earlier predictions, a shadow answer that
    came after its served one, a unit's later exposure (a shadow segment, or a unit whose
    outcome predates the experiment: a warning) and the prediction that gives an outcome
    sent by request id its unit. The analysis at the cutoff equals the
    analysis of a copy of the store from which those events were deleted (on SQLite: the
    backends agree to 1e-9 on everything else)."""
    spec = parse_experiment(
        {"key": "late", "variants": [{"name": "control", "model": "models:/m@a"},
                                     {"name": "treatment", "model": "models:/m@b"}],
         "weights": [0.5, 0.5], "shadow": {"variants": ["treatment"]},
         "metrics": [{"name": "recall", "kind": "recall"},
                     {"name": "accuracy", "kind": "accuracy"},
                     {"name": "revenue", "kind": "sum", "event": "purchase"}]},
        "test",
    )  # fmt: skip
    events = Events(
        exposures=[_exposure("a", "control", T0 + 1, country="US"),
                   _exposure("b", "treatment", T0 + 2, country="US"),
                   _exposure("c", "control", T0 + 3, country="DE"),
                   _exposure("a", "control", CUT + 100, country="FR"),
                   _exposure("z", "treatment", CUT + 200, country="US")],
        predictions=[_prediction("r1", "a", "control", T0 + 10, 0.9),
                     _prediction("r1", "a", "treatment", T0 + 11, 0.2, shadow=True),
                     _prediction("r2", "b", "treatment", T0 + 12, 0.8),
                     _prediction("r3", "c", "control", CUT - 5, 0.7),
                     _prediction("r3", "c", "treatment", CUT + 5, 0.1, shadow=True),
                     _prediction("r4", "c", "control", CUT + 50, 0.6)],
        outcomes=[_outcome("l1", "a", "label", 1.0, CUT + 500, "r1"),
                  _outcome("l2", "b", "label", 0.0, CUT - 500, "r2"),
                  _outcome("l3", "c", "label", 1.0, CUT - 1, "r3"),
                  _outcome("buy", "", "purchase", 10.0, CUT - 50, "r4"),
                  _outcome("early", "z", "purchase", 1.0, T0 - 100, "rz")],
    )  # fmt: skip
    phases = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": T0}]
    whole, cut = backend_url, f"sqlite:///{tmp_path / 'cut.db'}"
    for url in (whole, cut):
        register(url, spec, phases)
    write(whole, events)
    write(
        cut,
        Events(
            exposures=[row for row in events.exposures if row["ts"] < CUT],
            outcomes=[row for row in events.outcomes if row["ts"] < CUT],
            predictions=[row for row in events.predictions if row["ts"] < CUT],
        ),
    )

    def report(url: str) -> dict[str, Any]:
        options = AnalysisOptions(until=CUT, now=CUT, shadow_segment="country")
        result = orjson.loads(render_json(analyze(url, "late", options)))
        for varying in ("generated_at", "store"):
            result["provenance"].pop(varying)
        return dict(result)

    at_cutoff, reference = _leaves(report(whole)), _leaves(report(cut))
    assert at_cutoff.keys() == reference.keys()
    for path, value in reference.items():
        if isinstance(value, float):
            assert at_cutoff[path] == pytest.approx(value, rel=1e-9, nan_ok=True), path
        else:
            assert at_cutoff[path] == value, path
    assert (at_cutoff[".shadow[0].pairs"], at_cutoff[".shadow[0].labeled_pairs"]) == (1, 0)
    assert at_cutoff[".shadow[0].segments[0].value"] == "US"
    assert ".shadow[0].segments[1].value" not in at_cutoff


def _leaves(document: Any, path: str = "") -> dict[str, Any]:
    """Every value of a JSON document by its path, so that numbers compare approximately."""
    if isinstance(document, dict):
        return {
            k: v
            for key, value in document.items()
            for k, v in _leaves(value, f"{path}.{key}").items()
        }
    if isinstance(document, list):
        return {
            k: v
            for i, value in enumerate(document)
            for k, v in _leaves(value, f"{path}[{i}]").items()
        }
    return {path: document}


def test_a_cutoff_leaves_out_monitor_results_computed_after_it(tmp_path: Path) -> None:
    """The live monitor's verdicts enter the analysis's ``monitoring`` section; with a
    cutoff, only those computed by then on windows that had ended by then."""
    from abflow.store.monitoring import MonitorRecord, save_monitor_results

    url = _store(tmp_path)

    def alarm(start: float) -> MonitorRecord:
        return MonitorRecord("checkout", start, start + 100, "prediction_drift", "treatment",
                             "", "psi", 0.4, None, 0.2, True, 50, 50)  # fmt: skip

    save_monitor_results(url, "checkout", T0, [alarm(T0)], now=T0 + 110)
    save_monitor_results(url, "checkout", T0 + 100, [alarm(T0 + 100)], now=CUT + 60)
    cut = analyze(url, "checkout", AnalysisOptions(until=CUT))
    assert cut.monitoring is not None
    assert (cut.monitoring.windows, cut.monitoring.alarms) == (1, 1)
    everything = analyze(url, "checkout")
    assert everything.monitoring is not None
    assert (everything.monitoring.windows, everything.monitoring.alarms) == (2, 2)


def test_every_report_format_shows_the_cutoff_and_the_value_that_repeats_it(
    tmp_path: Path,
) -> None:
    from abflow.analysis import render_html, render_markdown, render_table

    url = _store(tmp_path)
    cut = analyze(url, "checkout", AnalysisOptions(until=CUT))
    shown = f"events before 2026-09-21 14:21 UTC (--until {CUT!r})"
    assert dt.datetime.fromtimestamp(CUT, tz=dt.UTC).strftime("%Y-%m-%d %H:%M") in shown
    for render in (render_table, render_markdown, render_html):
        assert shown in render(cut), render.__name__
    assert orjson.loads(render_json(cut))["provenance"]["until"] == CUT
    everything = analyze(url, "checkout")
    assert "--until" not in render_table(everything)
    assert "none: every event of the window" in render_html(everything)
    assert orjson.loads(render_json(everything))["provenance"]["until"] is None
