"""``abflow analyze --spec-version``: an audited decision re-run with the spec it was taken
with, after the spec has changed (without a traffic change, so in the same phase)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from abflow.analysis import analyze, render_json
from abflow.cli.main import app, main
from abflow.events.sink import exposure_row, outcome_row
from abflow.spec import ExperimentSpec, parse_experiment, spec_hash
from abflow.store import EventStore
from specs import two_arm_spec


def _spec(alpha: float, metrics: list[dict[str, Any]]) -> ExperimentSpec:
    return two_arm_spec(metrics=metrics, analysis={"alpha": alpha})


CONVERTED = {"name": "converted", "kind": "conversion", "event": "purchase", "role": "primary"}
REVENUE = {"name": "revenue", "kind": "sum", "event": "purchase"}


def _report(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["analyze", "checkout", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = orjson.loads(result.stdout)
    for varying in ("generated_at", "store"):  # the clock, and the CLI's label for the store
        report["provenance"].pop(varying)
    return report


def _exposures(store: EventStore, phase: int, variants: tuple[str, ...], n: int = 60) -> list[str]:
    """``n`` units exposed in ``phase``, the variants in turn; their ids."""
    units = [f"p{phase}-u{i}" for i in range(n)]
    store.write_events(
        "exposure",
        [
            exposure_row(
                experiment_key="checkout",
                phase=phase,
                unit_id=unit,
                variant=variants[i % len(variants)],
                attributes=None,
            )
            for i, unit in enumerate(units)
        ],
    )
    return units


def test_an_older_spec_version_analyses_as_that_spec_given_directly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    first = _spec(0.05, [CONVERTED])
    second = _spec(0.2, [CONVERTED, REVENUE])
    rng = np.random.default_rng(7)
    with EventStore.open(url) as store:
        store.register_experiment(first)
        phase = store.register_experiment(second).phase
        assert phase == 1  # the same traffic: the same phase
        units = _exposures(store, phase, ("control", "treatment"), n=400)
        store.write_events(
            "outcome",
            [
                outcome_row(
                    unit_id=unit,
                    name="purchase",
                    value=float(rng.gamma(2.0, 20.0)),
                    request_id=None,
                    experiment_key="checkout",
                )
                for unit in units
                if rng.random() < 0.3
            ],
        )

    old = _report("--store", url, "--spec-version", "1")
    direct = orjson.loads(render_json(analyze(url, first)))
    for varying in ("generated_at", "store"):
        direct["provenance"].pop(varying)
    assert old == direct
    assert old["provenance"]["spec_version"] == 1
    assert old["provenance"]["spec_hash"] == spec_hash(first)
    assert old["alpha"] == 0.05
    assert [m["name"] for m in old["metrics"]] == ["converted"]

    latest = _report("--store", url)
    assert latest["provenance"]["spec_version"] == 2
    assert latest["provenance"]["spec_hash"] == spec_hash(second)
    assert latest["alpha"] == 0.2
    assert [m["name"] for m in latest["metrics"]] == ["converted", "revenue"]


def _exit_of(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``abflow ARGS`` as the console script runs it: its exit code and what it printed."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out + captured.err


def _analyze(capsys: pytest.CaptureFixture[str], url: str, *options: str) -> tuple[int, str]:
    """``abflow analyze checkout --store URL OPTIONS``: exit code and what it printed."""
    return _exit_of(capsys, "analyze", "checkout", "--store", url, *options)


def test_a_spec_version_that_does_not_exist_is_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url) as store:
        store.register_experiment(_spec(0.05, [CONVERTED]))
    code, printed = _analyze(capsys, url, "--spec-version", "4")
    assert code == 2
    assert "has no spec version 4: versions are 1 to 1" in " ".join(printed.split())
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(_spec(0.05, [CONVERTED]).model_dump_json())
    code, printed = _analyze(capsys, url, "--spec", str(spec_file), "--spec-version", "1")
    assert code == 2
    assert "not both" in printed


def test_a_spec_version_analyses_only_the_phases_it_was_in_force_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Version 2 adds a variant, which opens phase 2: version 1 governed phase 1 only. Asked
    for version 1, analyze takes phase 1; asked for a phase the version never governed, it
    says which phases it did (it used to fail on the variant count, or analyse silently)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    first = _spec(0.05, [CONVERTED])
    data = first.model_dump(mode="json")
    data["variants"].append({"name": "t2", "model": "python:abflow.serving.demo_models:challenger"})
    data["weights"] = [0.4, 0.3, 0.3]
    second = parse_experiment(data, "test")
    with EventStore.open(url) as store:
        store.register_experiment(first)
        _exposures(store, 1, ("control", "treatment"))
        assert store.register_experiment(second).phase == 2
        _exposures(store, 2, ("control", "treatment", "t2"))

    old = _report("--store", url, "--spec-version", "1")
    assert (old["phase"], old["provenance"]["spec_version"]) == (1, 1)
    assert [v["variant"] for v in old["variants"]] == ["control", "treatment"]
    assert _report("--store", url, "--spec-version", "2")["phase"] == 2

    for version, phase, governed in (("1", "2", "phase 1"), ("2", "1", "phase 2")):
        code, printed = _analyze(capsys, url, "--spec-version", version, "--phase", phase)
        assert code == 2
        said = " ".join(printed.split())
        assert f"phase {phase} of 'checkout' did not run under spec version {version}" in said
        assert f"in force for {governed}" in said


def test_a_past_phase_or_a_cutoff_is_analysed_with_the_spec_in_force_then(
    tmp_path: Path,
) -> None:
    """Without --spec-version an earlier phase was judged with the newest spec: a margin
    loosened after a rollback made the gate pass on the very events the rollout had been
    rolled back on. The default is now the version in force at the end of the events
    analysed: the phase's end, or --until."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    now = [1_800_000_000.0]
    versions = [
        _spec(alpha, [CONVERTED]) for alpha in (0.05, 0.1)
    ]  # v1, then v2 in the same phase (only alpha changes)
    moved = versions[1].model_copy(update={"weights": [0.8, 0.2]})  # v3: a new phase
    later = moved.model_copy(
        update={"analysis": versions[1].analysis.model_copy(update={"alpha": 0.3})}
    )
    with EventStore.open(url, clock=lambda: now[0]) as store:
        for number, spec in enumerate((versions[0], versions[1], moved, later), start=1):
            registered = store.register_experiment(spec)
            assert registered.version == number
            now[0] += 3600.0
        assert [p.phase for p in store.phases("checkout")] == [1, 2]
        _exposures(store, 1, ("control", "treatment"))
        _exposures(store, 2, ("control", "treatment"))

    def used(*args: str) -> tuple[int, float]:
        report = _report("--store", url, *args)
        return report["provenance"]["spec_version"], report["alpha"]

    assert used() == (4, 0.3)  # the open phase: the newest version
    assert used("--phase", "1") == (2, 0.1)  # in force when phase 1 ended
    assert used("--phase", "1", "--until", str(1_800_000_000.0 + 1800)) == (1, 0.05)
    assert used("--phase", "2", "--until", str(1_800_000_000.0 + 3 * 3600 - 1)) == (3, 0.1)
    assert used("--phase", "1", "--spec-version", "1") == (1, 0.05)  # as asked
