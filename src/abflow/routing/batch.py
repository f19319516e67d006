"""Assign millions of units at once with numpy: same answers as :func:`abflow.assign`.

FNV-1a runs column by column over the UCS-4 code points of a numpy ``'U'`` array (numpy
stores each character as its code point, so non-ASCII ids hash exactly as in the single-unit
path). Rows are processed in chunks sorted by length, so a few long ids cost only their own
work, and the second hash of version 2 (over the decimal digits of the first) runs on the
32-bit integers directly. Use it for backfills, offline analysis and pre-computed
assignment tables; the gateway uses the single-unit path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from abflow.errors import InvalidArgumentError
from abflow.routing.conditions import eval_condition
from abflow.routing.experiment import (
    REASONS,
    Assignment,
    CompiledExperiment,
    compile_experiment,
)
from abflow.routing.hashing import FNV_OFFSET, FNV_PRIME, _fnv1a32_python
from abflow.spec import ExperimentSpec

__all__ = ["BatchAssignment", "assign_batch", "fnv1a32_array"]

_CHUNK_ROWS = 1 << 14
_PRIME = np.uint32(FNV_PRIME)
_REASON_CODE = {reason: code for code, reason in enumerate(REASONS)}


@dataclass(frozen=True, slots=True)
class BatchAssignment:
    """Assignments of many units as parallel arrays (one row per input unit id).

    ``index`` is the variant index (-1 when not in the experiment), ``bucket`` the hash in
    ``[0, 1)`` (NaN when the unit was not hashed), ``reason`` an index into ``reasons``.
    """

    index: npt.NDArray[np.int32]
    bucket: npt.NDArray[np.float64]
    in_experiment: npt.NDArray[np.bool_]
    reason: npt.NDArray[np.uint8]
    variant_names: tuple[str, ...]
    reasons: tuple[str, ...] = REASONS

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def variants(self) -> npt.NDArray[np.object_]:
        """Variant name of each unit (None when not in the experiment)."""
        table = np.array([*self.variant_names, None], dtype=object)
        return table[self.index]  # index -1 picks the trailing None

    def reason_names(self) -> npt.NDArray[np.object_]:
        """The ``reason`` codes as strings (``"assigned"``, ``"coverage"``, …)."""
        return np.array(self.reasons, dtype=object)[self.reason]

    def counts(self) -> dict[str, int]:
        """Units per variant name (units not in the experiment are left out)."""
        totals = np.bincount(self.index[self.index >= 0], minlength=len(self.variant_names))
        return {name: int(total) for name, total in zip(self.variant_names, totals, strict=True)}


def _as_unicode(
    unit_ids: Sequence[str] | npt.NDArray[Any],
) -> tuple[npt.NDArray[np.str_], list[str] | None]:
    """A 1-d ``'U'`` array of the ids, and the original strings when they came as a list.

    numpy drops trailing NUL characters from ``'U'`` strings, so ids given as Python strings
    are kept to recompute any row that lost one.
    """
    originals: list[str] | None = None
    if isinstance(unit_ids, np.ndarray):
        array = unit_ids
    else:
        originals = list(unit_ids)
        array = np.asarray(originals) if originals else np.zeros(0, dtype="U1")
    if array.dtype.kind == "O" and all(isinstance(item, str) for item in array.flat):
        originals = list(array.flat) if array.ndim == 1 else originals
        array = array.astype(str) if array.size else np.zeros(array.shape, dtype="U1")
    if array.dtype.kind != "U":
        msg = f"unit ids must be strings, got an array of {array.dtype}"
        raise InvalidArgumentError(msg)
    if array.ndim != 1:
        msg = f"unit ids must be one-dimensional, got shape {array.shape}"
        raise InvalidArgumentError(msg)
    return array, originals


def fnv1a32_array(
    values: npt.NDArray[np.str_], *, prefix: str = "", suffix: str = ""
) -> npt.NDArray[np.uint32]:
    """``fnv1a32(prefix + value + suffix)`` for every string of a 1-d ``'U'`` array."""
    (result,) = _hash_all(values, [(prefix, suffix)])
    return result


def _hash_all(
    values: npt.NDArray[np.str_], affixes: Sequence[tuple[str, str]]
) -> list[npt.NDArray[np.uint32]]:
    """One FNV-1a hash per ``(prefix, suffix)`` pair, sharing the code-point columns."""
    results = [np.empty(values.shape[0], dtype=np.uint32) for _ in affixes]
    starts = [np.uint32(_fnv1a32_python(prefix)) for prefix, _ in affixes]
    suffixes = [[np.uint32(ord(char)) for char in suffix] for _, suffix in affixes]
    for begin in range(0, values.shape[0], _CHUNK_ROWS):
        chunk = values[begin : begin + _CHUNK_ROWS]
        columns, firsts, order = _columns(chunk)
        for result, start, suffix in zip(results, starts, suffixes, strict=True):
            state = np.full(chunk.shape[0], start, dtype=np.uint32)
            for column, first in zip(columns, firsts, strict=True):
                active = state[first:]
                active ^= column[first:]
                active *= _PRIME
            for code in suffix:
                state ^= code
                state *= _PRIME
            if order is None:
                result[begin : begin + chunk.shape[0]] = state
            else:
                result[begin + order] = state
    return results


def _columns(
    chunk: npt.NDArray[np.str_],
) -> tuple[npt.NDArray[np.uint32], list[int], npt.NDArray[np.intp] | None]:
    """Code points as contiguous columns, rows sorted by length when lengths differ.

    Column ``j`` only needs hashing from row ``firsts[j]`` on: the rows before it are
    shorter than ``j + 1`` characters.
    """
    rows = chunk.shape[0]
    width = chunk.dtype.itemsize // 4
    if rows == 0 or width == 0:
        return np.zeros((0, rows), dtype=np.uint32), [], None
    codes = np.ascontiguousarray(chunk).view(np.uint32).reshape(rows, width)
    lengths = np.strings.str_len(chunk)
    if bool((lengths == width).all()):
        return np.ascontiguousarray(codes.T), [0] * width, None
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    longest = int(sorted_lengths[-1])
    columns = np.ascontiguousarray(codes[order, :longest].T)
    firsts = np.searchsorted(sorted_lengths, np.arange(longest), side="right").tolist()
    return columns, firsts, order


_SMALL = 10**7
"""Below this, a 32-bit value has fewer than 8 digits (0.2% of hashes): done one by one."""


def _hash_decimal(inner: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """``fnv1a32(str(x))`` for each 32-bit ``x``: FNV over its decimal digits, no strings.

    Every digit position is hashed for all rows; the two leading positions are kept only
    where the number is that long, and the rare numbers under 8 digits are redone exactly.
    """
    state = np.full(inner.shape[0], FNV_OFFSET, dtype=np.uint32)
    higher = None
    for exponent in range(9, -1, -1):
        power = np.uint32(10**exponent)
        quotient = inner // power
        digit = quotient if higher is None else quotient - higher * np.uint32(10)
        higher = quotient
        stepped = (state ^ (digit + np.uint32(48))) * _PRIME
        state = np.where(quotient > 0, stepped, state) if exponent >= 8 else stepped
    for row in np.flatnonzero(inner < _SMALL):
        state[row] = _fnv1a32_python(str(int(inner[row])))
    return state


def _hashes(
    compiled: CompiledExperiment, ids: npt.NDArray[np.str_]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32] | None]:
    """Bucket keys (``bucket * scale``) and, with a namespace, namespace keys (``* 1000``)."""
    affixes = [("", compiled.seed) if compiled.hash_version == 1 else (compiled.seed, "")]
    if compiled.namespace is not None:
        affixes.append(("", "__" + compiled.namespace[0]))
    hashed = _hash_all(ids, affixes)
    if compiled.hash_version == 2:
        keys = _hash_decimal(hashed[0]) % np.uint32(10000)
    else:
        keys = hashed[0] % np.uint32(1000)
    spots = hashed[1] % np.uint32(1000) if compiled.namespace is not None else None
    return keys, spots


def assign_batch(
    experiment: ExperimentSpec | CompiledExperiment,
    unit_ids: Sequence[str] | npt.NDArray[Any],
    attributes: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]] | None = None,
) -> BatchAssignment:
    """Assign every unit id at once; row ``i`` equals ``assign(experiment, {unit: ids[i]})``.

    ``attributes`` (one mapping per unit, same order) is required when the experiment has a
    targeting condition, and is used only to evaluate it. Empty ids count as missing units.
    """
    compiled = (
        experiment if isinstance(experiment, CompiledExperiment) else compile_experiment(experiment)
    )
    ids, originals = _as_unicode(unit_ids)
    count = ids.shape[0]
    rows_attributes = None if attributes is None else list(attributes)

    keys, spots = _hashes(compiled, ids)
    bucket = keys.astype(np.float64) / float(compiled.scale)
    index = np.full(count, -1, dtype=np.int32)
    for position, (start, end) in enumerate(compiled.ranges):
        index[(bucket >= start) & (bucket < end) & (index < 0)] = position
    reason = np.where(index >= 0, _REASON_CODE["assigned"], _REASON_CODE["coverage"]).astype(
        np.uint8
    )

    # Later rules override earlier ones, so apply them from the last decision to the first.
    if compiled.namespace is not None and spots is not None:
        _, start, end = compiled.namespace
        spot = spots / 1000.0
        _exclude(index, bucket, reason, ~((spot >= start) & (spot < end)), "namespace")
    if compiled.condition is not None:
        targeted = _targeted(compiled, rows_attributes, count)
        _exclude(index, bucket, reason, ~targeted, "condition")
    lengths = np.strings.str_len(ids)
    _exclude(index, bucket, reason, lengths == 0, "no_unit")
    # An id ending in NUL cannot live in a 'U' array; such rows are redone below.
    forced_ids = [unit_id for unit_id in compiled.forced if unit_id and unit_id[-1] != "\x00"]
    if forced_ids:
        for row in np.flatnonzero(np.isin(ids, np.array(forced_ids, dtype=str))).tolist():
            _set_row(index, bucket, reason, row, compiled.forced[str(ids[row])])
    if originals is not None:
        true_lengths = np.fromiter(map(len, originals), dtype=np.int64, count=count)
        for row in np.flatnonzero(true_lengths != lengths).tolist():  # ids that lost a trailing NUL
            row_attributes = dict(rows_attributes[row]) if rows_attributes is not None else {}
            row_attributes[compiled.unit] = originals[row]
            _set_row(index, bucket, reason, row, compiled.assign(row_attributes))

    return BatchAssignment(
        index=index,
        bucket=bucket,
        in_experiment=index >= 0,
        reason=reason,
        variant_names=compiled.variant_names,
    )


def _set_row(
    index: npt.NDArray[np.int32],
    bucket: npt.NDArray[np.float64],
    reason: npt.NDArray[np.uint8],
    row: int,
    assignment: Assignment,
) -> None:
    index[row] = assignment.index
    bucket[row] = np.nan if assignment.bucket is None else assignment.bucket
    reason[row] = _REASON_CODE[assignment.reason]


def _exclude(
    index: npt.NDArray[np.int32],
    bucket: npt.NDArray[np.float64],
    reason: npt.NDArray[np.uint8],
    mask: npt.NDArray[np.bool_],
    why: str,
) -> None:
    index[mask] = -1
    bucket[mask] = np.nan
    reason[mask] = _REASON_CODE[why]


def _targeted(
    compiled: CompiledExperiment, attributes: list[Mapping[str, Any]] | None, count: int
) -> npt.NDArray[np.bool_]:
    if attributes is None:
        msg = (
            f"experiment {compiled.key!r} has a targeting condition; pass one attributes "
            "mapping per unit id"
        )
        raise InvalidArgumentError(msg)
    if len(attributes) != count:
        msg = f"{len(attributes)} attribute mappings for {count} unit ids; give one per unit"
        raise InvalidArgumentError(msg)
    condition = compiled.condition
    assert condition is not None  # checked by the caller
    return np.fromiter(
        (eval_condition(attrs, condition) for attrs in attributes), dtype=bool, count=count
    )
