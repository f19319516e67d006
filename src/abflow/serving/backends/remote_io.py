"""What goes over the wire to a model server and how its answer becomes one output per row.

Three protocols:

- ``invocations`` (MLflow scoring server, SageMaker): ``{"dataframe_split": {"columns",
  "data"}}`` when the model's columns are known (a model with a DataFrame signature refuses
  anything else), else ``{"inputs": rows}``; answers ``{"predictions": …}`` or a bare list.
- ``v2`` (KServe / Open Inference Protocol: MLServer, Triton): one input tensor with the
  name, datatype and shape the model declares; answers ``outputs`` tensors.
- ``vertex``: ``{"instances": rows}`` answering ``{"predictions": …}``.

:class:`OutputReader` turns each row's answer into the value abflow logs: with ``output:
proba`` a class probability (``class_index``, default the positive class of two), with
``predict`` the answer as is, and ``auto`` takes P(positive) from a two-class answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from abflow.errors import ConfigError
from abflow.serving.backends.failure import RemoteModelError

__all__ = [
    "OutputReader",
    "Protocol",
    "TensorSpec",
    "encode_rows",
    "parse_json_path",
    "read_predictions",
]

Protocol = Literal["invocations", "v2", "vertex"]
V2Datatype = Literal["FP32", "FP64", "INT64"]
OutputMode = Literal["auto", "proba", "predict"]
_NUMPY_DTYPES: dict[str, type[np.generic]] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT64": np.int64,
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A v2 model's input tensor: name, datatype and the width of a row (None: any)."""

    name: str = "input-0"
    datatype: V2Datatype = "FP64"
    width: int | None = None

    @classmethod
    def from_metadata(cls, metadata: Any) -> TensorSpec:
        """From ``GET /v2/models/{name}``: its first declared input (the defaults when the
        model declares none, as MLServer models without ``inputs`` in their settings do)."""
        if isinstance(metadata, dict) and not metadata.get("inputs"):
            return cls()
        try:
            first = metadata["inputs"][0]
            name = str(first["name"])
            datatype = str(first["datatype"]).upper()
            shape = [int(s) for s in first.get("shape", [])]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            msg = f"model metadata has no usable 'inputs' entry: {str(metadata)[:200]}"
            raise ConfigError(msg) from exc
        if datatype not in _NUMPY_DTYPES:
            msg = f"input {name!r} has datatype {datatype}; supported: FP32, FP64, INT64"
            raise ConfigError(msg)
        width = shape[-1] if len(shape) >= 2 and shape[-1] > 0 else None
        return cls(name, datatype, width)  # type: ignore[arg-type]


def encode_rows(
    rows: np.ndarray,
    protocol: Protocol,
    *,
    columns: tuple[str, ...] | None = None,
    tensor: TensorSpec | None = None,
    output_names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The request document for ``rows`` (2-D) in ``protocol``."""
    if protocol == "invocations":
        if columns:
            return {"dataframe_split": {"columns": list(columns), "data": rows.tolist()}}
        return {"inputs": rows.tolist()}
    if protocol == "vertex":
        if columns:
            return {"instances": [dict(zip(columns, row, strict=True)) for row in rows.tolist()]}
        return {"instances": rows.tolist()}
    spec = tensor or TensorSpec()
    data = rows.astype(_NUMPY_DTYPES[spec.datatype], copy=False)
    document: dict[str, Any] = {
        "inputs": [
            {
                "name": spec.name,
                "shape": list(data.shape),
                "datatype": spec.datatype,
                "data": data.ravel().tolist(),
            }
        ]
    }
    if output_names:
        document["outputs"] = [{"name": name} for name in output_names]
    return document


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """``$.result.scores`` or ``result[0].scores`` → the keys and indices to follow."""
    steps: list[str | int] = []
    for part in path.removeprefix("$").replace("[", ".").replace("]", "").split("."):
        if part:
            steps.append(int(part) if part.lstrip("-").isdigit() else part)
    if not steps:
        msg = f"output_path {path!r} names nothing"
        raise ConfigError(msg)
    return tuple(steps)


def _follow(data: Any, steps: tuple[str | int, ...]) -> Any:
    for step in steps:
        data = data[step]
    return data


def read_predictions(
    data: Any,
    protocol: Protocol,
    n_rows: int,
    *,
    output_name: str | None = None,
    json_path: tuple[str | int, ...] | None = None,
) -> list[Any]:
    """One raw answer per row; RemoteModelError(bad_output) when the document has none."""
    try:
        if json_path is not None:
            values = _follow(data, json_path)
        elif protocol == "v2":
            values = _v2_values(data, n_rows, output_name)
        else:
            values = data.get("predictions") if isinstance(data, dict) else data
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        msg = f"answer has no predictions where expected ({type(exc).__name__}: {exc})"
        raise RemoteModelError(msg, "bad_output") from exc
    if not isinstance(values, list):
        msg = f"answer has no list of predictions: {str(data)[:200]}"
        raise RemoteModelError(msg, "bad_output")
    if len(values) != n_rows:
        msg = f"answer has {len(values)} predictions for {n_rows} rows"
        raise RemoteModelError(msg, "bad_output")
    return values


def _v2_values(data: Any, n_rows: int, output_name: str | None) -> list[Any]:
    outputs = data["outputs"]
    if output_name is None:
        tensor = outputs[0]
    else:
        named = [t for t in outputs if t.get("name") == output_name]
        if not named:
            have = [t.get("name") for t in outputs]
            msg = f"no output named {output_name!r} (outputs: {have})"
            raise KeyError(msg)
        tensor = named[0]
    flat = np.asarray(tensor["data"])
    shape = [int(s) for s in tensor.get("shape", [n_rows])]
    if len(shape) >= 2 and int(np.prod(shape[1:])) > 1:
        values: list[Any] = flat.reshape(shape).tolist()
    else:
        values = flat.ravel().tolist()
    return values


@dataclass(frozen=True, slots=True)
class OutputReader:
    """Turns one row's answer into the logged output (a score when it can be one)."""

    mode: OutputMode = "auto"
    class_index: int | None = None

    def read(self, values: list[Any]) -> list[Any]:
        if self.mode == "predict":
            return values
        return [self._one(value) for value in values]

    def _one(self, value: Any) -> Any:
        if isinstance(value, dict) and self.mode == "proba":
            value = list(value.values())  # {"0": p0, "1": p1}: a DataFrame row of classes
        if not isinstance(value, list) or not value:
            return value
        if self.class_index is not None:
            try:
                return value[self.class_index]
            except IndexError:
                msg = f"class_index {self.class_index} is out of range for {len(value)} classes"
                raise RemoteModelError(msg, "bad_output") from None
        if len(value) == 2 and all(_is_number(v) for v in value):
            return value[1]
        if self.mode == "proba":
            msg = f"{len(value)} class probabilities: set class_index to choose the score"
            raise RemoteModelError(msg, "bad_output")
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
