"""One monitor pass over a store's experiments: what ``abflow monitor`` and the gateway's
monitor task (:mod:`abflow.monitoring.task`) both run, so that they judge drift alike.

Per experiment: the reference for feature drift is each variant's training sample when the
run behind its registry model logged one (fetched once per model reference and process; a
registry that cannot be reached is reported and the variant falls back to the window), else
the reference window; then :func:`~abflow.monitoring.monitor.monitor_experiment` computes and
saves the recent windows and the gauges are set from its records. An experiment that cannot
be monitored is reported and counted; the others still are.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from abflow.errors import AbflowError
from abflow.monitoring.feature_files import Columns, read_columns
from abflow.monitoring.monitor import MonitorOptions, WindowReport, monitor_experiment
from abflow.monitoring.monitor_metrics import MonitorMetrics
from abflow.spec import ExperimentSpec, MonitoringSpec
from abflow.store.monitoring import monitor_history, sample_windows

__all__ = ["ExperimentPass", "MonitorRunner", "ReferenceSource", "TrainingSample"]

logger = logging.getLogger(__name__)

TrainingSample = Callable[[str, Path], Path | None]
"""Download the training sample behind a model reference into a folder (None: there is
none); :func:`abflow.registry.training_data.training_sample`, given by the caller because the
registry is not monitoring's to import."""


class ReferenceSource(StrEnum):
    """auto: each variant's training sample when there is one, else the window; window:
    always the window."""

    auto = "auto"
    window = "window"


@dataclass(frozen=True, slots=True)
class ExperimentPass:
    """One experiment's part of a pass: its windows, or why it could not be monitored."""

    key: str
    reports: list[WindowReport]
    error: AbflowError | None = None


class MonitorRunner:
    """Runs passes over a store's experiments and publishes their gauges.

    ``training_sample`` None means :attr:`ReferenceSource.window`. ``warn`` receives the
    sentences about a missing training sample (the CLI prints them, the gateway logs them).
    """

    def __init__(
        self,
        store: Any,
        options: MonitorOptions,
        metrics: MonitorMetrics,
        *,
        training_sample: TrainingSample | None = None,
        warn: Callable[[str], None] = logger.warning,
    ) -> None:
        self.store = store
        self.options = options
        self.metrics = metrics
        self._training_sample = training_sample
        self._warn = warn
        self._samples: dict[str, Columns | None] = {}  # by model reference
        self._downloads: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        """Remove the downloaded training samples."""
        if self._downloads is not None:
            self._downloads.cleanup()
            self._downloads = None

    def experiment_keys(self) -> list[str]:
        """Every experiment in the store, re-read each time: a loop watches new ones too."""
        return [stored.spec.key for stored in self.store.list_experiments()]

    def run_experiment(self, key: str) -> list[WindowReport]:
        """Compute and save the experiment's recent windows (none without samples)."""
        spec = self.store.get_experiment(key).spec
        now = time.time()
        options = self.options
        if self._training_sample is not None and sample_windows(self.store, key):
            found = self._training_references(spec, self._training_sample)
            options = dataclasses.replace(options, reference_by_variant=found or None)
        return monitor_experiment(self.store, spec, options, now=now)

    def run_pass(
        self, keys: Sequence[str] | None = None, *, stop: threading.Event | None = None
    ) -> list[ExperimentPass]:
        """Every experiment named (default: all in the store), in order; ``stop`` ends the
        pass before the next experiment. Gauges are set from each experiment's records."""
        done = []
        for key in keys or self.experiment_keys():
            if stop is not None and stop.is_set():
                break
            try:
                reports = self.run_experiment(key)
            except AbflowError as exc:
                self.metrics.errors.labels(key).inc()
                done.append(ExperimentPass(key, [], exc))
                continue
            records = (r for report in reports for r in report.records)
            self.metrics.publish(key, records, time.time())
            done.append(ExperimentPass(key, reports))
        return done

    def publish_stored(self, keys: Sequence[str] | None = None) -> None:
        """Set the gauges from the results another process saved: the windows a pass would
        have published, at the time they were computed."""
        for key in keys or self.experiment_keys():
            spec = self.store.get_experiment(key).spec
            width = (spec.monitoring or MonitoringSpec()).window_hours * 3600.0
            since = time.time() - (self.options.lookback_windows + 1) * width
            records = monitor_history(self.store, key, since=since)
            if records:
                computed = max(record.computed_at for record in records)
                self.metrics.publish(key, records, computed)

    def _training_references(
        self, spec: ExperimentSpec, fetch: TrainingSample
    ) -> dict[str, Columns]:
        """Each variant's training sample, by variant name."""
        if self._downloads is None:
            self._downloads = tempfile.TemporaryDirectory(prefix="abflow-reference-")
        found: dict[str, Columns] = {}
        for variant in spec.variants:
            if variant.model not in self._samples:
                folder = Path(self._downloads.name) / str(len(self._samples))
                try:
                    path = fetch(variant.model, folder)
                    self._samples[variant.model] = None if path is None else read_columns(path)
                except AbflowError as exc:
                    self._warn(f"{variant.model}: no training sample ({exc}); using the window")
                    self._samples[variant.model] = None
            columns = self._samples[variant.model]
            if columns is not None:
                found[variant.name] = columns
        return found
