"""Assign millions of units at once with numpy: same answers as :func:`abflow.assign`.

FNV-1a runs column by column over the UTF-16 code units of a numpy ``'U'`` array. numpy
stores each character as its UCS-4 code point, which is its code unit inside the Basic
Multilingual Plane; a chunk that holds a character above U+FFFF is first rewritten as code
units (surrogate pairs), so such ids hash exactly as in the single-unit path and in
GrowthBook's SDKs, and ASCII chunks pay one maximum for the check. Rows are processed in cache-sized chunks, each over its own longest id, and the
second hash of version 2 (over the decimal digits of the first) runs on the
32-bit integers directly. Use it for backfills, offline analysis and pre-computed
assignment tables; the gateway uses the single-unit path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from abflow.errors import InvalidArgumentError
from abflow.routing.experiment import (
    REASONS,
    Assignment,
    CompiledExperiment,
    compile_experiment,
    unit_text,
)
from abflow.routing.hashing import FNV_OFFSET, FNV_PRIME, _fnv1a32_python, utf16_units
from abflow.spec import ExperimentSpec
from abflow.targeting.conditions import SavedGroups, eval_condition

__all__ = ["BatchAssignment", "assign_batch", "fnv1a32_array"]

_CHUNK_ROWS = 1 << 12
_LAST_BMP = np.uint32(0xFFFF)
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
) -> tuple[npt.NDArray[np.str_], list[str] | None, npt.NDArray[np.intp] | None]:
    """A 1-d ``'U'`` array of the ids; for ids given as Python strings, also the strings
    and their true lengths.

    numpy drops trailing NUL characters from ``'U'`` strings, so the caller recomputes any
    row whose length changed.
    """
    if isinstance(unit_ids, np.ndarray) and unit_ids.dtype.kind != "O":
        if unit_ids.dtype.kind != "U" and unit_ids.size:
            msg = f"unit ids must be strings, got an array of {unit_ids.dtype}"
            raise InvalidArgumentError(msg)
        if unit_ids.ndim != 1:
            msg = f"unit ids must be one-dimensional, got shape {unit_ids.shape}"
            raise InvalidArgumentError(msg)
        return unit_ids.astype(str, copy=False), None, None
    if isinstance(unit_ids, np.ndarray) and unit_ids.ndim != 1:
        msg = f"unit ids must be one-dimensional, got shape {unit_ids.shape}"
        raise InvalidArgumentError(msg)
    originals = list(unit_ids)
    kinds = set(map(type, originals))
    if not kinds <= {str}:
        names = sorted(kind.__name__ for kind in kinds - {str})
        msg = f"unit ids must be strings, got {', '.join(names)}"
        raise InvalidArgumentError(msg)
    lengths = np.fromiter(map(len, originals), dtype=np.intp, count=len(originals))
    width = max(int(lengths.max()) if lengths.size else 1, 1)
    array = np.fromiter(originals, dtype=f"U{width}", count=len(originals))
    return array, originals, lengths


def fnv1a32_array(
    values: npt.NDArray[np.str_], *, prefix: str = "", suffix: str = ""
) -> npt.NDArray[np.uint32]:
    """``fnv1a32(prefix + value + suffix)`` for every string of a 1-d ``'U'`` array."""
    (result,), _ = _hash_all(values, [(prefix, suffix)])
    return result


def _hash_all(
    values: npt.NDArray[np.str_], affixes: Sequence[tuple[str, str]]
) -> tuple[list[npt.NDArray[np.uint32]], npt.NDArray[np.intp]]:
    """One FNV-1a hash per ``(prefix, suffix)`` pair, sharing the code-point columns.

    Every row of a chunk is hashed over the chunk's longest length, so shorter rows also
    hash their NUL padding: ``h -> (h ^ 0) * prime`` per padding character. The prime is
    odd, hence invertible modulo 2**32, and multiplying by its inverse once per padding
    character undoes that exactly, with no per-row branching or sorting.
    """
    results = [np.empty(values.shape[0], dtype=np.uint32) for _ in affixes]
    lengths = np.empty(values.shape[0], dtype=np.intp)
    starts = [np.uint32(_fnv1a32_python(prefix)) for prefix, _ in affixes]
    suffixes = [[np.uint32(unit) for unit in utf16_units(suffix)] for _, suffix in affixes]
    for begin in range(0, values.shape[0], _CHUNK_ROWS):
        chunk = values[begin : begin + _CHUNK_ROWS]
        columns, padding, lengths[begin : begin + chunk.shape[0]] = _columns(chunk)
        unpad = None if padding is None else _inverse_powers(columns.shape[0])[padding]
        for result, start, suffix in zip(results, starts, suffixes, strict=True):
            state = result[begin : begin + chunk.shape[0]]
            state.fill(start)
            for column in columns:
                state ^= column
                state *= _PRIME
            if unpad is not None:
                state *= unpad
            for code in suffix:
                state ^= code
                state *= _PRIME
    return results, lengths


def _columns(
    chunk: npt.NDArray[np.str_],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp] | None, npt.NDArray[np.intp]]:
    """UTF-16 code units as contiguous columns (up to the chunk's longest id), each row's
    number of padding units (None when every row has the same length), and the lengths in
    characters."""
    rows = chunk.shape[0]
    width = chunk.dtype.itemsize // 4
    lengths = np.strings.str_len(chunk)
    longest = int(lengths.max()) if rows else 0
    if longest == 0:
        return np.zeros((0, rows), dtype=np.uint32), None, lengths
    codes = np.ascontiguousarray(chunk).view(np.uint32).reshape(rows, width)
    columns = np.ascontiguousarray(codes[:, :longest].T)
    if columns.max() > _LAST_BMP:
        columns, unit_lengths = _surrogate_columns(columns, lengths)
        padding = columns.shape[0] - unit_lengths
    else:
        padding = longest - lengths
    return columns, (padding if bool(padding.any()) else None), lengths


def _surrogate_columns(
    columns: npt.NDArray[np.uint32], lengths: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp]]:
    """Code-point columns rewritten as UTF-16 code-unit columns, and each row's length in
    code units: a code point above U+FFFF becomes its high then its low surrogate."""
    astral = columns > _LAST_BMP
    size = 1 + astral.astype(np.intp)
    starts = np.cumsum(size, axis=0) - size  # where each character's first unit goes
    units = np.zeros((int(starts[-1].max() + size[-1].max()), columns.shape[1]), np.uint32)
    rows = np.broadcast_to(np.arange(columns.shape[1]), columns.shape)
    offset = np.where(astral, columns - np.uint32(0x10000), np.uint32(0))
    units[starts, rows] = np.where(astral, np.uint32(0xD800) + (offset >> 10), columns)
    units[starts[astral] + 1, rows[astral]] = np.uint32(0xDC00) + (offset[astral] & 0x3FF)
    return units, lengths + astral.sum(axis=0)


@functools.lru_cache(maxsize=64)
def _inverse_powers(count: int) -> npt.NDArray[np.uint32]:
    """``prime ** -k mod 2**32`` for ``k`` in ``0..count``."""
    inverse = pow(FNV_PRIME, -1, 2**32)
    powers = [1]
    for _ in range(count):
        powers.append(powers[-1] * inverse % 2**32)
    return np.array(powers, dtype=np.uint32)


def _hash_decimal(inner: npt.NDArray[np.uint32], exact_from: int = 8) -> npt.NDArray[np.uint32]:
    """``fnv1a32(str(x))`` for each 32-bit ``x``: FNV over its decimal digits, no strings.

    Every digit position is hashed for all rows, but a leading zero must not be: positions
    from ``10**exact_from`` up are kept only where the number reaches them. Numbers too short
    for that (under 8 digits by default, 0.2% of hashes) are redone with every position
    checked, which keeps the common case free of most per-row selection.
    """
    state = np.full(inner.shape[0], FNV_OFFSET, dtype=np.uint32)
    quotient = np.empty_like(inner)
    higher = np.zeros_like(inner)
    stepped = np.empty_like(inner)
    for exponent in range(9, -1, -1):
        np.floor_divide(inner, np.uint32(10**exponent), out=quotient)
        np.multiply(higher, np.uint32(10), out=stepped)
        np.subtract(quotient, stepped, out=stepped)  # the digit
        stepped += np.uint32(48)
        stepped ^= state
        stepped *= _PRIME
        if exponent >= exact_from:
            np.copyto(state, stepped, where=quotient > 0)
        else:
            state, stepped = stepped, state
        higher, quotient = quotient, higher
    if exact_from > 1:
        short = np.flatnonzero(inner < np.uint32(10 ** (exact_from - 1)))
        if short.size:
            state[short] = _hash_decimal(inner[short], exact_from=1)
    return state


def _affix(seed: str, hash_version: int) -> tuple[str, str]:
    """Where ``bucket_hash`` puts the seed: after the value (version 1) or before it."""
    return ("", seed) if hash_version == 1 else (seed, "")


def _keys(hashed: npt.NDArray[np.uint32], hash_version: int) -> npt.NDArray[np.uint32]:
    """Bucket keys (``bucket_hash * bucket_scale``) from the first FNV-1a hash."""
    if hash_version == 2:
        return _hash_decimal(hashed) % np.uint32(10000)
    return hashed % np.uint32(1000)


@dataclass(frozen=True, slots=True)
class _UnitHashes:
    keys: npt.NDArray[np.uint32]
    """Bucket keys of the experiment's seed."""
    spots: npt.NDArray[np.uint32] | None
    """Namespace keys (``* 1000``), when the spec has a namespace."""
    filter_keys: dict[int, npt.NDArray[np.uint32]]
    """Bucket keys of each filter that hashes the unit attribute, by filter position."""
    lengths: npt.NDArray[np.intp]


def _hashes(compiled: CompiledExperiment, ids: npt.NDArray[np.str_]) -> _UnitHashes:
    """Every hash of the unit ids, over one pass of their code-unit columns."""
    affixes = [_affix(compiled.seed, compiled.hash_version)]
    if compiled.namespace is not None:
        affixes.append(("", "__" + compiled.namespace[0]))
    on_unit = [i for i, f in enumerate(compiled.filters) if f.attribute == compiled.unit]
    affixes.extend(
        _affix(compiled.filters[i].seed, compiled.filters[i].hash_version) for i in on_unit
    )
    hashed, lengths = _hash_all(ids, affixes)
    first_filter = len(affixes) - len(on_unit)
    return _UnitHashes(
        keys=_keys(hashed[0], compiled.hash_version),
        spots=hashed[1] % np.uint32(1000) if compiled.namespace is not None else None,
        filter_keys={
            i: _keys(hashed[first_filter + n], compiled.filters[i].hash_version)
            for n, i in enumerate(on_unit)
        },
        lengths=lengths,
    )


def assign_batch(
    experiment: ExperimentSpec | CompiledExperiment,
    unit_ids: Sequence[str] | npt.NDArray[Any],
    attributes: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]] | None = None,
    *,
    saved_groups: SavedGroups | None = None,
) -> BatchAssignment:
    """Assign every unit id at once; row ``i`` equals the single-unit ``assign`` of that id.

    That is ``assign(experiment, {**attributes[i], unit: unit_ids[i]})``. ``attributes`` (one
    mapping per unit, same order) is required when the experiment has a targeting condition
    or a filter on an attribute other than the unit, and only feeds those, with
    ``saved_groups`` (group id -> members; default: the groups the experiment was compiled
    with) for ``$inGroup`` / ``$notInGroup``. Empty ids count as missing units. A numpy
    ``'U'`` array is the fast input; a list of strings is converted first.
    """
    compiled = (
        experiment if isinstance(experiment, CompiledExperiment) else compile_experiment(experiment)
    )
    ids, originals, true_lengths = _as_unicode(unit_ids)
    rows_attributes = None if attributes is None else list(attributes)
    # An id ending in NUL cannot live in a 'U' array; such rows are redone one by one.
    redo = np.zeros(ids.shape[0], dtype=bool)

    if compiled.inactive is not None:  # nobody but the forced units: nothing to hash
        lengths = np.strings.str_len(ids)
        index = np.full(ids.shape[0], -1, dtype=np.int32)
        bucket = np.full(ids.shape[0], np.nan)
        reason = np.full(ids.shape[0], _REASON_CODE["inactive"], dtype=np.uint8)
    else:
        hashes = _hashes(compiled, ids)
        lengths = hashes.lengths
        index_table, reason_table = compiled.memo("bucket_tables", lambda: _bucket_tables(compiled))
        index = index_table[hashes.keys]
        reason = reason_table[hashes.keys]
        bucket = hashes.keys / np.float64(compiled.scale)

        # Later rules override earlier ones, so apply them from the last decision to the first.
        if compiled.filters:
            kept = _kept_by_filters(compiled, hashes.filter_keys, rows_attributes, redo)
            _exclude(index, bucket, reason, ~kept, "filters")
        if compiled.namespace is not None and hashes.spots is not None:
            _, start, end = compiled.namespace
            inside = compiled.memo(
                "namespace_table", lambda: np.array([start <= k / 1000 < end for k in range(1000)])
            )
            _exclude(index, bucket, reason, ~inside[hashes.spots], "namespace")
        if compiled.condition is not None:
            groups = compiled.saved_groups if saved_groups is None else saved_groups
            unit_texts = originals if originals is not None else ids.tolist()
            targeted = _targeted(compiled, rows_attributes, unit_texts, groups)
            _exclude(index, bucket, reason, ~targeted, "condition")
        _exclude(index, bucket, reason, lengths == 0, "no_unit")
    forced_ids = [unit_id for unit_id in compiled.forced if unit_id and unit_id[-1] != "\x00"]
    if forced_ids:
        for row in np.flatnonzero(np.isin(ids, np.array(forced_ids, dtype=str))).tolist():
            _set_row(index, bucket, reason, row, compiled.forced[str(ids[row])])
    if originals is not None and true_lengths is not None:
        redo |= true_lengths != lengths
    for row in np.flatnonzero(redo).tolist():
        row_attributes = dict(rows_attributes[row]) if rows_attributes is not None else {}
        row_attributes[compiled.unit] = originals[row] if originals is not None else str(ids[row])
        _set_row(index, bucket, reason, row, compiled.assign(row_attributes, saved_groups))

    return BatchAssignment(
        index=index,
        bucket=bucket,
        in_experiment=index >= 0,
        reason=reason,
        variant_names=compiled.variant_names,
    )


def _bucket_tables(
    compiled: CompiledExperiment,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """Variant index and reason code for every bucket key, from the single-unit path."""
    decided = [compiled.for_bucket(key) for key in range(compiled.scale)]
    index = np.array([a.index for a in decided], dtype=np.int32)
    reason = np.array([_REASON_CODE[a.reason] for a in decided], dtype=np.uint8)
    return index, reason


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
    rows = np.flatnonzero(mask)
    if rows.size:
        index[rows] = -1
        bucket[rows] = np.nan
        reason[rows] = _REASON_CODE[why]


def _kept_by_filters(
    compiled: CompiledExperiment,
    unit_keys: Mapping[int, npt.NDArray[np.uint32]],
    attributes: list[Mapping[str, Any]] | None,
    redo: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    """Rows every filter keeps (as ``CompiledExperiment.is_filtered_out``). Filters on the
    unit attribute reuse its hashes; others hash their attribute's text, and a row whose
    text lost a trailing NUL is marked in ``redo``."""
    count = redo.shape[0]
    kept = np.ones(count, dtype=bool)
    for position, spec_filter in enumerate(compiled.filters):
        keys = unit_keys.get(position)
        if keys is None:
            rows = _require_attributes(compiled, attributes, count, "a filter on an attribute")
            texts = [unit_text(row.get(spec_filter.attribute)) or "" for row in rows]
            values, _, true_lengths = _as_unicode(texts)
            affix = _affix(spec_filter.seed, spec_filter.hash_version)
            (hashed,), lengths = _hash_all(values, [affix])
            keys = _keys(hashed, spec_filter.hash_version)
            kept &= lengths > 0
            if true_lengths is not None:
                redo |= true_lengths != lengths
        kept &= np.frombuffer(spec_filter.kept, dtype=bool)[keys]
    return kept


def _require_attributes(
    compiled: CompiledExperiment,
    attributes: list[Mapping[str, Any]] | None,
    count: int,
    needs: str,
) -> list[Mapping[str, Any]]:
    """The rows' attributes, which ``needs`` reads: one mapping per unit id."""
    if attributes is None:
        msg = f"experiment {compiled.key!r} has {needs}; pass one attributes mapping per unit id"
        raise InvalidArgumentError(msg)
    if len(attributes) != count:
        msg = f"{len(attributes)} attribute mappings for {count} unit ids; give one per unit"
        raise InvalidArgumentError(msg)
    return attributes


def _targeted(
    compiled: CompiledExperiment,
    attributes: list[Mapping[str, Any]] | None,
    unit_ids: list[str],
    groups: SavedGroups | None,
) -> npt.NDArray[np.bool_]:
    """The condition of every row, on its attributes with the unit id set (as ``assign``)."""
    count = len(unit_ids)
    attributes = _require_attributes(compiled, attributes, count, "a targeting condition")
    condition = compiled.condition
    assert condition is not None  # checked by the caller
    return np.fromiter(
        (
            eval_condition({**attrs, compiled.unit: unit_id}, condition, groups)
            for attrs, unit_id in zip(attributes, unit_ids, strict=True)
        ),
        dtype=bool,
        count=count,
    )
