"""Build a feature source from configuration (a gateway config file, a spec, a dict).

Two shapes, one key each::

    features:
      inline:                      # the request carries the features
        - {name: amount, type: float}
        - {name: visits, type: int, default: 0}
        - {name: country, type: str, default: unknown}
        - score                    # a bare name: a float with no default
      allow_extra: false

    features:
      feast:                       # the request carries the entity key
        repo: feature_repo/
        features: [user_stats:txn_count_7d, user_stats:avg_amount_7d]
        entity_key: user_id
        request_key: uid           # optional, defaults to entity_key
        defaults: {txn_count_7d: 0}

Relative Feast repo paths are resolved against ``base_dir`` (the config file's folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abflow.errors import ConfigError, InvalidArgumentError
from abflow.features.feast_store import FeastFeatures
from abflow.features.inline import InlineFeatures
from abflow.features.vector import FeatureSource

__all__ = ["feature_source_from_config"]

_FEAST_KEYS = frozenset({"repo", "features", "entity_key", "request_key", "defaults"})


def feature_source_from_config(
    config: Mapping[str, Any], *, base_dir: str | Path | None = None
) -> FeatureSource:
    """An InlineFeatures or FeastFeatures from ``{"inline": [...]}`` or ``{"feast": {...}}``."""
    kinds = [key for key in ("inline", "feast") if key in config]
    if len(kinds) != 1:
        msg = "a feature source config needs exactly one of 'inline' or 'feast'"
        raise ConfigError(msg)
    try:
        if kinds[0] == "inline":
            extra = set(config) - {"inline", "allow_extra"}
            if extra:
                msg = f"unknown inline feature settings {sorted(extra)}"
                raise ConfigError(msg)
            return InlineFeatures(config["inline"], allow_extra=bool(config.get("allow_extra")))
        feast = config["feast"]
        if not isinstance(feast, Mapping):
            msg = "'feast' must be a mapping with repo, features and entity_key"
            raise ConfigError(msg)
        unknown = set(feast) - _FEAST_KEYS
        missing = {"repo", "features", "entity_key"} - set(feast)
        if unknown or missing:
            problems = [f"unknown {sorted(unknown)}"] if unknown else []
            problems += [f"missing {sorted(missing)}"] if missing else []
            msg = f"feast feature settings: {', '.join(problems)}"
            raise ConfigError(msg)
        repo = Path(feast["repo"])
        if not repo.is_absolute() and base_dir is not None:
            repo = Path(base_dir) / repo
        return FeastFeatures(
            repo,
            list(feast["features"]),
            entity_key=str(feast["entity_key"]),
            request_key=feast.get("request_key"),
            defaults=feast.get("defaults"),
        )
    except (InvalidArgumentError, TypeError) as exc:
        msg = f"invalid feature source config: {exc}"
        raise ConfigError(msg) from exc
