"""Feature sources: features inline in the request, or fetched from Feast by entity key.

Each variant gets its features from a :class:`FeatureSource`; the gateway logs
``FeatureVector.hash`` with every prediction so that analysis can prove all variants saw
the same features. Feast is imported only when a FeastFeatures is created.
"""

from __future__ import annotations

from abflow.features.config import feature_source_from_config
from abflow.features.feast_store import FeastFeatures
from abflow.features.inline import NO_DEFAULT, FeatureSpec, FeatureType, InlineFeatures
from abflow.features.vector import FeatureSource, FeatureValue, FeatureVector, feature_vector_hash

__all__ = [
    "NO_DEFAULT",
    "FeastFeatures",
    "FeatureSource",
    "FeatureSpec",
    "FeatureType",
    "FeatureValue",
    "FeatureVector",
    "InlineFeatures",
    "feature_source_from_config",
    "feature_vector_hash",
]
