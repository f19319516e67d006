"""In-process models: a scikit-learn estimator, or any object with ``predict``.

References: ``file:PATH`` (joblib or pickle; unpickling runs code, so only load files you
trust), ``python:module:attribute`` (an object with ``predict``, or a factory returning
one), and registry references (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/…``)
resolved through :mod:`abflow.registry`. Calls go through a :class:`MicroBatcher`.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from abflow.errors import ArtifactChecksumError, BackendError, ConfigError
from abflow.serving.backends.remote_io import OutputReader
from abflow.serving.batching import Execution, MicroBatcher

__all__ = ["InProcessBackend", "LoadedModel", "OutputKind", "load_model", "predict_outputs"]

OutputKind = Literal["auto", "proba", "predict"]


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A predictor in memory with the version and checksum that identify it."""

    predictor: Any
    reference: str
    version: str
    checksum: str | None = None


def load_model(reference: str, *, expected_checksum: str | None = None) -> LoadedModel:
    """Load the predictor named by ``reference`` into this process.

    With ``expected_checksum`` (the SHA-256 recorded when the model entered the experiment)
    the artifacts are verified before anything is unpickled: ArtifactChecksumError if they
    changed, since a tampered or silently replaced model must never serve.
    """
    if reference.startswith("file:"):
        return _load_file(reference, expected_checksum)
    if reference.startswith("python:"):
        if expected_checksum is not None:
            msg = f"{reference!r} has no artifacts to verify; drop its checksum"
            raise ConfigError(msg)
        return _load_python(reference)
    if reference.startswith(("models:/", "runs:/")):
        return _load_registry(reference, expected_checksum)
    msg = f"{reference!r} is not an in-process model reference (file:, python:, models:/, runs:/)"
    raise ConfigError(msg)


def _load_file(reference: str, expected_checksum: str | None) -> LoadedModel:
    path = Path(reference.removeprefix("file:").removeprefix("//"))
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read model file {str(path)!r}: {exc.strerror}"
        raise ConfigError(msg) from exc
    checksum = hashlib.sha256(data).hexdigest()
    if expected_checksum is not None:
        expected = expected_checksum.strip().lower().removeprefix("sha256:")
        if checksum != expected:
            msg = (
                f"model file {str(path)!r} no longer matches its recorded checksum "
                f"(expected {expected[:12]}…, found {checksum[:12]}…): refusing to serve it"
            )
            raise ArtifactChecksumError(msg)
    import joblib

    try:
        predictor = joblib.load(path)
    except Exception as exc:  # joblib/pickle raise many types for a bad file
        msg = f"cannot load model file {str(path)!r}: {exc}"
        raise ConfigError(msg) from exc
    _require_predict(predictor, reference)
    return LoadedModel(predictor, reference, f"{path.stem}@{checksum[:12]}", checksum)


def _load_python(reference: str) -> LoadedModel:
    _, module_name, attribute = reference.split(":", 2)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import module {module_name!r} for {reference!r}: {exc}"
        raise ConfigError(msg) from exc
    try:
        target = getattr(module, attribute)
    except AttributeError:
        msg = f"module {module_name!r} has no attribute {attribute!r}"
        raise ConfigError(msg) from None
    predictor = target if hasattr(target, "predict") else target() if callable(target) else target
    _require_predict(predictor, reference)
    version = str(getattr(predictor, "model_version", f"{module_name}:{attribute}"))
    return LoadedModel(predictor, reference, version)


def _load_registry(reference: str, expected_checksum: str | None) -> LoadedModel:
    try:
        registry = importlib.import_module("abflow.registry")
    except ImportError as exc:
        msg = f"cannot resolve {reference!r}: the model registry is not available ({exc})"
        raise ConfigError(msg) from exc
    resolved = registry.resolve_model(reference, expected_checksum=expected_checksum)
    _require_predict(resolved.predictor, reference)
    version = f"{resolved.name}/{resolved.version}"
    return LoadedModel(resolved.predictor, reference, version, resolved.checksum)


def _require_predict(predictor: Any, reference: str) -> None:
    if not callable(getattr(predictor, "predict", None)):
        msg = f"{reference!r} has no predict method (got {type(predictor).__name__})"
        raise ConfigError(msg)


def predict_outputs(
    predictor: Any,
    rows: np.ndarray,
    output: OutputKind = "auto",
    class_index: int | None = None,
) -> list[Any]:
    """One output per row: P(positive) for binary classifiers (P(``class_index``) when
    given), class probabilities for multi-class ones, else ``predict``'s value. Plain
    Python values, ready for JSON."""
    if output != "predict" and hasattr(predictor, "predict_proba"):
        proba = np.asarray(predictor.predict_proba(rows))
        if class_index is not None:
            if proba.ndim != 2 or not 0 <= class_index < proba.shape[1]:
                msg = f"class_index {class_index} is out of range for probabilities {proba.shape}"
                raise BackendError(msg)
            by_class: list[Any] = proba[:, class_index].tolist()
            return by_class
        values: list[Any] = (
            proba[:, 1].tolist() if proba.ndim == 2 and proba.shape[1] == 2 else proba.tolist()
        )
        return values
    predicted: list[Any] = np.asarray(predictor.predict(rows)).tolist()
    if output == "proba" and predicted and not isinstance(predicted[0], list):
        msg = f"{type(predictor).__name__} has no predict_proba and predicts no probabilities"
        raise BackendError(msg)
    # An MLflow pyfunc logged with predict_fn="predict_proba" answers [[p0, p1], ...] from
    # predict: read it as a remote answer is read, so the score is the class probability.
    return OutputReader(output, class_index).read(predicted)


class InProcessBackend:
    """A loaded model behind a micro-batcher."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        output: OutputKind = "auto",
        class_index: int | None = None,
        max_rows: int = 64,
        max_wait_seconds: float = 0.002,
        execution: Execution = "auto",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self._output: OutputKind = output
        self._class_index = class_index
        n_features = getattr(model.predictor, "n_features_in_", None)
        self._n_features = int(n_features) if isinstance(n_features, int | np.integer) else None
        self.batcher = MicroBatcher(
            self._predict_rows,
            max_rows=max_rows,
            max_wait_seconds=max_wait_seconds,
            execution=execution,
            on_batch=on_batch,
            name=model.version,
        )

    @property
    def reference(self) -> str:
        return self.model.reference

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def n_features(self) -> int | None:
        return self._n_features

    def _predict_rows(self, rows: np.ndarray) -> list[Any]:
        return predict_outputs(self.model.predictor, rows, self._output, self._class_index)

    async def predict(self, rows: np.ndarray) -> list[Any]:
        return await self.batcher.predict(rows)

    async def aclose(self) -> None:
        await self.batcher.aclose()
