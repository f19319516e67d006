"""One feature vector per request, given to every variant that answers it.

The gateway config may name a feature source per experiment::

    features:
      fraud-model-v2:
        feast:                       # from Feast's online store, by entity key
          repo: feature_repo/        # relative to the config file
          features: [user_stats:txn_count_7d, user_stats:avg_amount_7d]
          entity_key: user_id        # read from the unit id or the request's attributes
          defaults: {txn_count_7d: 0}
        timeout_ms: 200              # longest wait for the feature store (default 1000)
      churn:
        inline:                      # from the request, checked against declared types
          - {name: amount, type: float}
          - {name: visits, type: int, default: 0}

The vector is built once, before routing, and the served model, a fallback and every shadow
copy score that same row; the logged ``features_hash`` is :func:`row_hash` of it (the floats
the model scored, under the names ``"0"``, ``"1"``, …), so the hashes of one request's
variants are equal unless something upstream is broken. With no source the request's rows
pass through as before; a batch logs no hash. Either way the hash depends on the model's
input alone, never on the model, and a monitoring sample (which keeps the same float row)
reproduces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from abflow.errors import BackendError, BackendTimeoutError, FeatureError
from abflow.features import (
    FeatureSource,
    FeatureVector,
    InlineFeatures,
    feature_source_from_config,
    feature_vector_hash,
)
from abflow.serving.inputs import feature_matrix

__all__ = [
    "FeatureSourceEntry",
    "GatewayFeatures",
    "RequestFeatures",
    "resolve_repo_paths",
    "row_hash",
]


class FeatureSourceEntry(BaseModel):
    """One experiment's entry under ``features``: ``inline`` or ``feast`` (see
    :func:`abflow.features.feature_source_from_config`) and the feature-store timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inline: list[str | dict[str, Any]] | None = None
    allow_extra: bool = False
    feast: dict[str, Any] | None = None
    timeout_ms: float = Field(default=1000.0, gt=0, description="longest feature-store read")

    def build(self) -> FeatureSource:
        """The source (opens the Feast repo: blocking, and slow on first import)."""
        return feature_source_from_config(
            self.model_dump(exclude={"timeout_ms"}, exclude_none=True)
        )


def resolve_repo_paths(entries: Any, base_dir: Path) -> Any:
    """``entries`` with each relative ``feast.repo`` made relative to ``base_dir`` (the
    config file's folder); anything that is not the expected shape is left for validation."""
    if not isinstance(entries, dict):
        return entries
    resolved: dict[Any, Any] = {}
    for key, entry in entries.items():
        feast = entry.get("feast") if isinstance(entry, dict) else None
        if isinstance(feast, dict) and isinstance(feast.get("repo"), str):
            repo = Path(feast["repo"])
            if not repo.is_absolute():
                entry = {**entry, "feast": {**feast, "repo": str(base_dir / repo)}}
        resolved[key] = entry
    return resolved


@lru_cache(maxsize=64)
def _positional_names(width: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(width))


def row_hash(row: np.ndarray) -> str:
    """The hash of the one row a request's variants score (the floats the model takes, under
    the names ``"0"``, ``"1"``, …), from the request or from a feature source alike."""
    values = row.tolist()
    return feature_vector_hash(_positional_names(len(values)), values)


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    """What every variant of one request scores, and the hash its predictions log."""

    rows: np.ndarray
    features_hash: str | None
    single: bool
    """Whether the request sent one row (the answer is one prediction, not a list)."""


@dataclass(frozen=True, slots=True)
class _Configured:
    source: FeatureSource
    timeout_seconds: float


class GatewayFeatures:
    """The configured feature source of each experiment; without one, the request's rows."""

    def __init__(self, sources: Mapping[str, tuple[FeatureSource, float]] | None = None) -> None:
        self._sources = {
            key: _Configured(source, timeout) for key, (source, timeout) in (sources or {}).items()
        }

    @classmethod
    def from_config(cls, entries: Mapping[str, FeatureSourceEntry]) -> GatewayFeatures:
        """Build every configured source (blocking: Feast repos are opened here)."""
        return cls({key: (e.build(), e.timeout_ms / 1000.0) for key, e in entries.items()})

    def source(self, experiment_key: str) -> FeatureSource | None:
        configured = self._sources.get(experiment_key)
        return configured.source if configured is not None else None

    async def prepare(
        self,
        experiment_key: str,
        features: list[Any],
        request: Mapping[str, Any],
        *,
        n_features: int | None,
        max_rows: int,
    ) -> RequestFeatures:
        """The rows and hash for one request. ``request`` holds the attributes with the unit
        id under the spec's unit attribute (where a Feast entity key is looked up)."""
        configured = self._sources.get(experiment_key)
        if configured is None:
            if not features:
                msg = "features: missing; send one row [x1, x2, ...] or a batch of rows"
                raise FeatureError(msg)
            rows = feature_matrix(features, n_features=n_features, max_rows=max_rows)
            digest = row_hash(rows[0]) if rows.shape[0] == 1 else None
            return RequestFeatures(rows, digest, single=not isinstance(features[0], list))
        source = configured.source
        if isinstance(source, InlineFeatures):
            vectors, single = _inline(source, features, max_rows)
        else:
            if features:
                msg = (
                    f"features: experiment {experiment_key!r} reads its features from a feature "
                    f"store by {_request_key(source)!r}; send no features"
                )
                raise FeatureError(msg)
            vectors, single = [await _fetch(experiment_key, configured, request)], True
        table = []
        for i, vector in enumerate(vectors):
            try:
                table.append(vector.as_floats())
            except FeatureError as exc:
                msg = f"features{'' if single else f'[{i}]'}: {exc}"
                raise FeatureError(msg) from None
        rows = np.array(table, dtype=np.float64)
        if n_features is not None and rows.shape[1] != n_features:
            msg = (
                f"features: the feature source of {experiment_key!r} gives {rows.shape[1]} "
                f"values per row, the model expects {n_features}"
            )
            raise FeatureError(msg)
        return RequestFeatures(rows, row_hash(rows[0]) if single else None, single=single)


def _request_key(source: FeatureSource) -> str:
    return str(getattr(source, "request_key", "the entity key"))


def _inline(
    source: InlineFeatures, features: list[Any], max_rows: int
) -> tuple[list[FeatureVector], bool]:
    """``[v1, v2, ...]`` or ``[{name: value}]`` is one row; a list of several mappings or of
    lists is a batch."""
    if not features:
        msg = f"features: missing; this experiment takes {list(source.names)}"
        raise FeatureError(msg)
    first = features[0]
    if not isinstance(first, dict | list):
        rows: list[Any] = [features]
        single = True
    else:
        rows = features
        single = isinstance(first, dict) and len(features) == 1
    if len(rows) > max_rows:
        msg = f"features: {len(rows)} rows is over the limit of {max_rows}"
        raise FeatureError(msg)
    vectors = []
    for i, row in enumerate(rows):
        try:
            vectors.append(source.get(row))
        except FeatureError as exc:
            msg = f"features{'' if single else f'[{i}]'}: {exc}"
            raise FeatureError(msg) from None
    return vectors, single


async def _fetch(
    experiment_key: str, configured: _Configured, request: Mapping[str, Any]
) -> FeatureVector:
    """Read the feature store off the event loop, within its timeout. A missing or unknown
    entity is the caller's problem (FeatureError, 422); a store that fails or does not
    answer is ours (BackendError, 502; BackendTimeoutError, 504)."""
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(configured.source.get, request), configured.timeout_seconds
        )
    except TimeoutError:
        msg = (
            f"feature store of {experiment_key!r}: no answer within "
            f"{configured.timeout_seconds * 1000:g} ms"
        )
        raise BackendTimeoutError(msg) from None
    except FeatureError as exc:
        if exc.__cause__ is None:
            raise
        msg = f"feature store of {experiment_key!r}: {exc}"
        raise BackendError(msg) from exc
