"""Reading feature samples from files (CSV, JSON Lines, Parquet) as columns for drift checks.

Columns come back as plain lists so that the pure drift functions decide what is a number;
CSV cells that parse as numbers become floats, empty cells become None (missing).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from abflow.errors import InvalidArgumentError

__all__ = ["MAX_ROWS", "read_columns", "split_by"]

MAX_ROWS = 10_000_000
"""Rows read from one file at most: a larger sample adds nothing a drift check needs."""

Columns = dict[str, list[Any]]


def read_columns(path: Path) -> Columns:
    """Columns of a ``.csv``, ``.jsonl``/``.ndjson`` or ``.parquet`` file, by name."""
    if path.is_dir():
        msg = f"{path}: is a directory, not a file"
        raise InvalidArgumentError(msg)
    if not path.is_file():
        msg = f"{path}: no such file"
        raise InvalidArgumentError(msg)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            columns = _read_csv(path)
        elif suffix in {".jsonl", ".ndjson"}:
            columns = _read_json_lines(path)
        elif suffix == ".parquet":
            columns = _read_parquet(path)
        else:
            msg = f"{path}: unknown file type {suffix!r}; use .csv, .jsonl, .ndjson or .parquet"
            raise InvalidArgumentError(msg)
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text ({exc.reason}); save the file as UTF-8"
        raise InvalidArgumentError(msg) from None
    except csv.Error as exc:
        msg = f"{path}: not readable as CSV ({exc})"
        raise InvalidArgumentError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot read ({exc.strerror or exc})"
        raise InvalidArgumentError(msg) from None
    if not columns or not any(columns.values()):
        msg = f"{path}: the file holds no rows"
        raise InvalidArgumentError(msg)
    return columns


def _cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _read_csv(path: Path) -> Columns:
    # utf-8-sig: a byte order mark (Excel writes one) is not part of the first column's name
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return {}
        if len(set(header)) != len(header):
            msg = f"{path}: the header names a column twice"
            raise InvalidArgumentError(msg)
        columns: Columns = {name: [] for name in header}
        lists = list(columns.values())
        for row in _bounded(reader, path):
            if len(row) != len(header):
                # line_num counts physical lines, so quoted newlines do not shift it
                line = reader.line_num
                msg = f"{path}:{line}: {len(row)} cells, the header has {len(header)}"
                raise InvalidArgumentError(msg)
            for values, text in zip(lists, row, strict=True):
                values.append(_cell(text))
    return columns


def _read_json_lines(path: Path) -> Columns:
    rows: list[Mapping[str, Any]] = []
    with path.open("rb") as handle:
        for line, raw in enumerate(_bounded(handle, path), start=1):
            if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a byte order mark, not JSON
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                msg = f"{path}:{line}: not JSON ({exc})"
                raise InvalidArgumentError(msg) from None
            if not isinstance(row, dict):
                msg = f"{path}:{line}: each line must be a JSON object"
                raise InvalidArgumentError(msg)
            rows.append(row)
    names = list(dict.fromkeys(name for row in rows for name in row))
    return {name: [row.get(name) for row in rows] for name in names}


def _read_parquet(path: Path) -> Columns:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with MLflow
        msg = "reading Parquet needs pyarrow: pip install pyarrow"
        raise InvalidArgumentError(msg) from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read Parquet ({exc})"
        raise InvalidArgumentError(msg) from None
    if table.num_rows > MAX_ROWS:
        raise _too_many_rows(path)
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _bounded(rows: Iterable[Any], path: Path) -> Iterable[Any]:
    for count, row in enumerate(rows):
        if count >= MAX_ROWS:
            raise _too_many_rows(path)
        yield row


def _too_many_rows(path: Path) -> InvalidArgumentError:
    msg = (
        f"{path}: more than {MAX_ROWS:,} rows; sample the file first (at random: its first "
        "rows may all come from one day)"
    )
    return InvalidArgumentError(msg)


def split_by(columns: Columns, column: str) -> dict[str, Columns]:
    """Rows grouped by the value of one column (e.g. the variant), that column left out."""
    if column not in columns:
        names = ", ".join(columns)
        msg = f"no column {column!r} to split by; columns are {names}"
        raise InvalidArgumentError(msg)
    keys = columns[column]
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        if key is None or (isinstance(key, float) and math.isnan(key)):
            continue
        label = _label(key)
        groups.setdefault(label, []).append(index)
    rest = {name: values for name, values in columns.items() if name != column}
    return {
        label: {name: [values[i] for i in rows] for name, values in rest.items()}
        for label, rows in groups.items()
    }


def _label(key: Any) -> str:
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)
