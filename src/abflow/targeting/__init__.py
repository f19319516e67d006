"""The targeting-condition language: who an experiment applies to.

MongoDB-style JSON conditions with GrowthBook's semantics: evaluation
(:mod:`~abflow.targeting.conditions`), validation (:mod:`~abflow.targeting.validation`),
both reading one operator table (:data:`OPERATORS`), JavaScript's value conversions
(:mod:`~abflow.targeting.js_values`) and the JavaScript-regex translator
(:mod:`~abflow.targeting.js_regex`) that ``$regex`` goes through. A leaf: it imports only
:mod:`abflow.errors` and the standard library, so spec and routing can both depend on it.
"""

from __future__ import annotations

from abflow.targeting.conditions import (
    OPERATORS,
    Operator,
    SavedGroups,
    eval_condition,
    saved_group_ids,
)
from abflow.targeting.js_values import padded_version, value_type
from abflow.targeting.validation import JSON_TYPES, validate_condition

__all__ = [
    "JSON_TYPES",
    "OPERATORS",
    "Operator",
    "SavedGroups",
    "eval_condition",
    "padded_version",
    "saved_group_ids",
    "validate_condition",
    "value_type",
]
