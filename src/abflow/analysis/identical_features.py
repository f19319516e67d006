"""Did each variant's model see the features its predictions logged? The analysis side of
:mod:`abflow.store.feature_identity`: per variant from the monitoring samples, per shadow
variant from the shadow path, as records, warnings and the lines every report prints.
"""

from __future__ import annotations

from abflow.analysis.results import ExperimentResult, SampledFeatures
from abflow.spec import ExperimentSpec, MonitoringSpec
from abflow.store.aggregates import StoreTarget, Window
from abflow.store.feature_identity import sampled_feature_identity

__all__ = ["identical_features_lines", "sampled_feature_warnings", "sampled_features"]


def sampled_features(
    target: StoreTarget, spec: ExperimentSpec, phase: int, window: Window
) -> list[SampledFeatures]:
    """Per variant with samples in the window: samples, those comparable, those identical."""
    names = (spec.monitoring or MonitoringSpec()).features
    found = sampled_feature_identity(target, spec.key, phase, window=window, names=names)
    return [
        SampledFeatures(name, found[name].pairs, found[name].compared, found[name].identical)
        for name in spec.variant_names
        if name in found
    ]


def _share(identical: int, compared: int) -> str:
    return f"identical on {identical / compared:.1%} of {compared:,}"


def sampled_feature_warnings(sampled: list[SampledFeatures]) -> list[str]:
    """A warning per variant whose sampled rows do not all hash to the logged vector."""
    return [
        f"variant {s.variant}: the sampled features differ from the logged features hash on "
        f"{s.compared - s.identical:,} of {s.compared:,} sampled requests (identical on "
        f"{s.share:.1%}): the model scored other inputs than the vector its predictions "
        "record"
        for s in sampled
        if s.identical < s.compared
    ]


def identical_features_lines(result: ExperimentResult) -> list[str]:
    """One line per variant with comparable samples and per shadow variant with hashes:
    ``control: identical on 99.8% of 4,012 sampled requests``."""
    lines = [
        f"{s.variant}: {_share(s.identical, s.compared)} sampled requests"
        for s in result.sampled_features
        if s.compared
    ]
    lines += [
        f"shadow {s.variant} vs served: "
        f"{_share(s.identical_feature_pairs, s.feature_pairs)} mirrored requests"
        for s in result.shadow
        if s.feature_pairs
    ]
    return lines
