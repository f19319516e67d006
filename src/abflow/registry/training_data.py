"""The training sample behind a model version: the live monitor's default drift reference.

A training job that wants its model watched against the data it learned from logs a sample
of that data (CSV, JSON Lines or Parquet, one column per feature) as an artifact of the run
that produced the model, under :data:`REFERENCE_ARTIFACT_PATH`::

    mlflow.log_artifact("train_sample.parquet", artifact_path="abflow-reference")

:func:`training_sample` finds the run behind a ``models:/`` or ``runs:/`` reference and
downloads that file; None when the run logged none (the monitor then uses a window).
"""

from __future__ import annotations

from pathlib import Path

from abflow.registry.connection import client_for, mlflow_errors
from abflow.registry.records import parse_reference
from abflow.registry.resolve import lookup_version

__all__ = ["REFERENCE_ARTIFACT_PATH", "REFERENCE_SUFFIXES", "training_sample"]

REFERENCE_ARTIFACT_PATH = "abflow-reference"
REFERENCE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson")


def training_sample(
    reference: str, destination: Path, *, tracking_uri: str | None = None
) -> Path | None:
    """Download the training sample of the run behind ``reference`` into ``destination``.

    None for a reference that is not a registry one (``file:``, ``http(s)://``, …), for a
    version without a run, and for a run that logged no sample.
    """
    if not reference.startswith(("models:/", "runs:/")):
        return None
    ref = parse_reference(reference)
    client, _ = client_for(tracking_uri)
    with mlflow_errors(f"cannot find the training sample of {reference}"):
        run_id = ref.run_id if ref.kind == "run" else lookup_version(client, ref).run_id
        if not run_id:
            return None
        files = [
            item.path
            for item in client.list_artifacts(str(run_id), REFERENCE_ARTIFACT_PATH)
            if not item.is_dir and item.path.lower().endswith(REFERENCE_SUFFIXES)
        ]
        if not files:
            return None
        destination.mkdir(parents=True, exist_ok=True)
        local = client.download_artifacts(str(run_id), sorted(files)[0], str(destination))
    return Path(local)
