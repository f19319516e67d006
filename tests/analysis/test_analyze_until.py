"""``abflow analyze --until TIME``: the analysis of the events before a cutoff, so that a
report or an audited decision can be re-run later on the data it saw."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from abflow.analysis import AnalysisOptions, analyze, render_json
from abflow.cli.main import app, main
from abflow.events.sink import exposure_row, outcome_row
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
