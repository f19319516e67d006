"""One feature row sent to a remote model server before it serves, to learn whether it can.

A challenger whose server refuses the gateway's payload (a DataFrame signature with other
columns, a tensor of the wrong width or type) would otherwise register fine and then fall
back to the control on every request. So registering a spec sends one probe row to each new
HTTP backend, on the very path a request takes (same payload, same output reading), and a
refusal is a 422 naming the variant and the server and quoting its answer.

The probe row is the backend's configured ``example:`` (a list in column order, or column
→ value), else a row of zeros as wide as the model's columns or declared input (``columns:``,
``signature_from:``, ``n_features:``, v2 metadata), else as wide as the experiment's other
models. Only answers are judged: a server that cannot be reached or does not answer in time
does not block registration (it is reported by ``/readyz`` and falls back like any failure).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from abflow.errors import BackendError, ConfigError, InvalidSpecError
from abflow.serving.backends.failure import FailureReason, failure_reason
from abflow.serving.backends.resilience import GuardedBackend

if TYPE_CHECKING:
    from abflow.serving.backends import BackendOptions
    from abflow.spec import ExperimentSpec

__all__ = [
    "REFUSALS",
    "ProbeResult",
    "is_remote",
    "probe",
    "probe_row",
    "probe_spec",
    "refusal",
]

REFUSALS: frozenset[FailureReason] = frozenset({"status_4xx", "status_5xx", "bad_output"})
"""Probe outcomes that mean the server got the row and cannot serve it: registration fails.
Timeouts and connection errors say nothing about the payload, so they do not."""


def is_remote(reference: str) -> bool:
    """Whether a model reference names a remote model server."""
    return reference.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found; ``reason`` and ``error`` are None when the server answered."""

    backend: str
    """The backend's reference as it may be shown (no credentials)."""
    row_source: str
    reason: FailureReason | None = None
    error: str | None = None
    checked_at: float = 0.0
    """Unix time of the answer (or of the failure)."""

    @property
    def is_ok(self) -> bool:
        return self.reason is None

    @property
    def is_refusal(self) -> bool:
        return self.reason in REFUSALS


def probe_row(
    example: Sequence[float] | Mapping[str, float] | None,
    backend: GuardedBackend,
    width: int | None,
) -> tuple[np.ndarray, str] | None:
    """The row to probe ``backend`` with, and where it came from; None when nothing says
    how wide a row is. ``width`` is the experiment's row width, from its other models."""
    columns: tuple[str, ...] | None = getattr(backend.inner, "columns", None)
    n_features = backend.n_features
    if example is not None:
        if isinstance(example, Mapping):
            if not columns:
                msg = (
                    f"backend {backend.reference}: an example given by column names needs "
                    "the model's columns (columns: or signature_from:)"
                )
                raise ConfigError(msg)
            missing = [c for c in columns if c not in example]
            if missing:
                msg = f"backend {backend.reference}: example has no value for columns {missing}"
                raise ConfigError(msg)
            values = [example[c] for c in columns]
        else:
            values = list(example)
        if n_features is not None and len(values) != n_features:
            msg = (
                f"backend {backend.reference}: example has {len(values)} values, "
                f"the model takes {n_features}"
            )
            raise ConfigError(msg)
        return np.asarray([values], dtype=np.float64), "the configured example"
    n = n_features or width
    if not n:
        return None
    return np.zeros((1, n), dtype=np.float64), f"a row of {n} zeros"


async def probe(backend: GuardedBackend, row: np.ndarray, row_source: str) -> ProbeResult:
    """Send ``row`` to ``backend`` (past its circuit breaker: the probe is how a broken
    backend is found) and record the outcome in the breaker, as a call would."""
    try:
        async with asyncio.timeout(backend.timeout_seconds):
            await backend.inner.predict(row)
    except TimeoutError:
        backend.breaker.record_failure()
        msg = f"model server {backend.reference} did not answer in {backend.timeout_seconds:g} s"
        return ProbeResult(backend.reference, row_source, "timeout", msg, time.time())
    except BackendError as exc:
        backend.breaker.record_failure()
        return ProbeResult(
            backend.reference, row_source, failure_reason(exc), str(exc), time.time()
        )
    except Exception as exc:  # a model server's answer must never crash registration
        backend.breaker.record_failure()
        error = f"model server {backend.reference}: {type(exc).__name__}: {exc}"
        return ProbeResult(backend.reference, row_source, "error", error, time.time())
    backend.breaker.record_success()
    return ProbeResult(backend.reference, row_source, checked_at=time.time())


def refusal(
    variant_results: Sequence[tuple[int, ProbeResult]], source: str = "body"
) -> InvalidSpecError | None:
    """The 422 for the probes whose server refused the row (``(variant index, result)``
    pairs), naming each variant's model field; None when none did."""
    problems = [
        f"variants[{index}].model: the probe row ({result.row_source}) was refused: {result.error}"
        for index, result in variant_results
        if result.is_refusal
    ]
    return InvalidSpecError(problems, source) if problems else None


def probe_spec(
    spec: ExperimentSpec,
    options: Mapping[str, BackendOptions],
    *,
    source: str,
    timeout_seconds: float = 5.0,
) -> list[str]:
    """Probe every remote backend of ``spec`` from here, as registration from the command
    line does (no gateway, so the row width comes from the remote backends' own options
    and metadata). Raises the InvalidSpecError of a refusal; returns warnings for servers
    that could not be reached or not be probed."""
    return asyncio.run(_probe_spec(spec, options, source, timeout_seconds))


async def _probe_spec(
    spec: ExperimentSpec,
    options: Mapping[str, BackendOptions],
    source: str,
    timeout_seconds: float,
) -> list[str]:
    from abflow.serving.backends import build_backend

    remote = [(i, v.model) for i, v in enumerate(spec.variants) if is_remote(v.model)]
    backends: dict[str, GuardedBackend] = {}
    try:
        for _, reference in remote:
            if reference not in backends:
                backends[reference] = build_backend(
                    reference, options.get(reference), timeout_seconds=timeout_seconds
                )
        width = next((b.n_features for b in backends.values() if b.n_features), None)
        warnings: list[str] = []
        jobs: list[tuple[int, str, tuple[np.ndarray, str]]] = []
        for index, reference in remote:
            opts = options.get(reference)
            chosen = probe_row(opts.example if opts else None, backends[reference], width)
            if chosen is None:
                warnings.append(
                    f"variants[{index}].model: not probed: the row width is unknown "
                    "(give the backend example:, columns: or n_features: in the gateway config)"
                )
                continue
            jobs.append((index, reference, chosen))
        results = await asyncio.gather(*(probe(backends[ref], *row) for _, ref, row in jobs))
        pairs = [(index, result) for (index, _, _), result in zip(jobs, results, strict=True)]
        error = refusal(pairs, source)
        if error is not None:
            raise error
        warnings.extend(
            f"variants[{index}].model: the model server failed the probe ({result.reason}): "
            f"{result.error}"
            for index, result in pairs
            if not result.is_ok
        )
        return warnings
    finally:
        for backend in backends.values():
            await backend.aclose()
