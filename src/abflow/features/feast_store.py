"""Features fetched from a Feast feature store by entity key (``pip install 'abflow[feast]'``).

The request carries the entity key (``{"user_id": 42}``); the store's online store answers
with the latest materialised values. A value Feast does not have (an unknown entity, a
feature never materialised, one past its TTL) comes back as None: it is filled from the
declared default or raised as FeatureError naming the feature and the entity, never passed
on as NaN. An entity key of the wrong kind (``"abc"`` for an integer join key) is a
FeatureError too; a store that cannot be read raises FeatureError chained to the store's own
exception (``__cause__`` set), so that a server can tell its own outage from bad input.
Feast is imported only when a FeastFeatures is built (it is slow to import).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from abflow.errors import ConfigError, FeatureError, InvalidArgumentError
from abflow.features.vector import FeatureValue, FeatureVector

__all__ = ["FeastFeatures"]


class FeastFeatures:
    """Online features from a Feast repo for the entity named in each request.

    ``features`` are Feast references ``"view:feature"``, in model order; ``names`` are
    their feature parts (``"view__feature"`` when two views share a feature name).
    ``entity_key`` is the Feast join key; ``request_key`` the request field holding it
    (defaults to the join key). ``defaults`` maps feature names to fill-in values.
    """

    def __init__(
        self,
        repo_path: str | Path,
        features: Sequence[str],
        *,
        entity_key: str,
        request_key: str | None = None,
        defaults: Mapping[str, FeatureValue] | None = None,
        store: Any = None,
    ) -> None:
        if not features:
            msg = "declare at least one Feast feature reference"
            raise InvalidArgumentError(msg)
        for ref in features:
            view, _, name = ref.partition(":")
            if not view or not name:
                msg = f"Feast feature reference {ref!r} must look like 'view:feature'"
                raise InvalidArgumentError(msg)
        self.repo_path = Path(repo_path)
        self.feature_refs = tuple(features)
        self.entity_key = entity_key
        self.request_key = request_key or entity_key
        short = [ref.partition(":")[2] for ref in features]
        self._full_names = len(set(short)) != len(short)
        self._names = (
            tuple(ref.replace(":", "__") for ref in features) if self._full_names else tuple(short)
        )
        self.defaults = dict(defaults or {})
        unknown = sorted(set(self.defaults) - set(self._names))
        if unknown:
            msg = f"defaults for undeclared features {unknown}; features are {list(self._names)}"
            raise InvalidArgumentError(msg)
        self._store = store if store is not None else self._open(self.repo_path)
        self._is_integer_key = _is_integer_key(self._store, entity_key)

    @staticmethod
    def _open(repo_path: Path) -> Any:
        if not (repo_path / "feature_store.yaml").is_file():
            msg = f"{repo_path} is not a Feast repo: it has no feature_store.yaml"
            raise ConfigError(msg)
        try:
            from feast import FeatureStore
        except ImportError as exc:  # pragma: no cover - depends on the install
            msg = "FeastFeatures needs Feast: pip install 'abflow[feast]'"
            raise ConfigError(msg) from exc
        try:
            return FeatureStore(repo_path=str(repo_path))
        except Exception as exc:
            msg = f"cannot open the Feast repo at {repo_path}: {_first_line(exc)}"
            raise ConfigError(msg) from exc

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def get(self, request: Mapping[str, Any]) -> FeatureVector:
        """Features of the entity named by ``request[request_key]``."""
        return self.get_many([request])[0]

    def get_many(self, requests: Sequence[Mapping[str, Any]]) -> list[FeatureVector]:
        """Features for many entities in one online-store read."""
        keys = []
        for index, request in enumerate(requests):
            key = request.get(self.request_key)
            if key is None:
                where = f"request {index}" if len(requests) > 1 else "the request"
                msg = f"{where} has no {self.request_key!r}, the entity key for Feast features"
                raise FeatureError(msg)
            keys.append(self._entity_value(key))
        if not keys:
            return []
        try:
            response = self._store.get_online_features(
                features=list(self.feature_refs),
                entity_rows=[{self.entity_key: key} for key in keys],
                full_feature_names=self._full_names,
            ).to_dict()
        except Exception as exc:
            msg = (
                f"cannot read features from the Feast repo at {self.repo_path}: {_first_line(exc)}"
            )
            raise FeatureError(msg) from exc
        return [self._vector(response, row, key) for row, key in enumerate(keys)]

    def _entity_value(self, key: Any) -> Any:
        """An integer join key from text (a unit id ``"17"``), else FeatureError naming it."""
        if not self._is_integer_key or not isinstance(key, str):
            return key
        try:
            return int(key)
        except ValueError:
            msg = f"{self.request_key}={key!r} is not an integer, which Feast's {self.entity_key!r} is"
            raise FeatureError(msg) from None

    def _vector(self, response: Mapping[str, list[Any]], row: int, key: Any) -> FeatureVector:
        values: list[FeatureValue] = []
        defaulted: list[str] = []
        for name in self._names:
            column = response.get(name)
            value = column[row] if column is not None else None
            if isinstance(value, float) and math.isnan(value):
                value = None
            if value is None:
                if name not in self.defaults:
                    msg = (
                        f"feature {name!r} has no value in Feast for "
                        f"{self.entity_key}={key!r} and no default"
                    )
                    raise FeatureError(msg)
                value = self.defaults[name]
                defaulted.append(name)
            values.append(value)
        return FeatureVector(self._names, tuple(values), defaulted=tuple(defaulted))


def _is_integer_key(store: Any, join_key: str) -> bool:
    """Whether the Feast entity with ``join_key`` is keyed by integers (False if unknown)."""
    try:
        entities = store.list_entities()
    except Exception:  # a store without a registry to ask: keys pass through as given
        return False
    for entity in entities:
        if getattr(entity, "join_key", None) == join_key:
            return str(getattr(entity, "value_type", "")).rsplit(".", 1)[-1] in {"INT32", "INT64"}
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
