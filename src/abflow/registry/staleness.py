"""Model age, data freshness and retrain hooks: notice a champion going stale, then act.

Ages come from registry timestamps only, so any process can compute them: the model's age is
the time since its version was created; its data is as old as the ``abflow.data_as_of`` tag
(ISO 8601, set by the training job) or, without one, the start of the run that produced it.
``stale_models`` lists the aliased versions (``champion`` by default) past a limit and logs a
warning for each; a retrain hook (a shell command or a webhook) can then be called with them.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from abflow.errors import InvalidArgumentError
from abflow.registry.connection import client_for, from_millis, is_not_found, mlflow_errors
from abflow.registry.records import ModelVersionInfo, parse_reference
from abflow.registry.resolve import lookup_version, version_info
from abflow.spec import ExperimentSpec

__all__ = [
    "DATA_AS_OF_TAG",
    "ModelAge",
    "RetrainHook",
    "RetrainResult",
    "ShellRetrainHook",
    "StaleModel",
    "WebhookRetrainHook",
    "model_age",
    "retrain_hook",
    "stale_models",
    "trigger_retrain",
    "variant_ages",
]

logger = logging.getLogger("abflow.registry")

DATA_AS_OF_TAG = "abflow.data_as_of"
"""Model-version tag: ISO 8601 time of the newest data the model was trained on."""


@dataclass(frozen=True, slots=True)
class ModelAge:
    """How old a model version and its training data are, at ``measured_at``."""

    name: str
    version: str
    alias: str | None
    created_at: datetime
    data_as_of: datetime
    data_as_of_source: str  # "tag", "run" or "version"
    measured_at: datetime

    @property
    def age_seconds(self) -> float:
        return (self.measured_at - self.created_at).total_seconds()

    @property
    def data_age_seconds(self) -> float:
        return (self.measured_at - self.data_as_of).total_seconds()


@dataclass(frozen=True, slots=True)
class StaleModel:
    """An aliased version past a limit, and every limit it is past."""

    age: ModelAge
    reasons: tuple[str, ...]

    def payload(self) -> dict[str, Any]:
        """JSON-ready description sent to retrain hooks."""
        return {
            "name": self.age.name,
            "version": self.age.version,
            "alias": self.age.alias,
            "age_seconds": round(self.age.age_seconds, 3),
            "data_age_seconds": round(self.age.data_age_seconds, 3),
            "created_at": self.age.created_at.isoformat(),
            "data_as_of": self.age.data_as_of.isoformat(),
            "reasons": list(self.reasons),
        }


def _parse_time(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        msg = f"{where} is {value!r}, not an ISO 8601 time"
        raise InvalidArgumentError(msg) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _age_of(client: Any, info: ModelVersionInfo, alias: str | None, now: datetime) -> ModelAge:
    tag = info.tags.get(DATA_AS_OF_TAG)
    if tag:
        data_as_of = _parse_time(tag, f"tag {DATA_AS_OF_TAG} of {info.reference}")
        source = "tag"
    elif info.run_id:
        data_as_of = from_millis(client.get_run(info.run_id).info.start_time)
        source = "run"
    else:
        data_as_of, source = info.created_at, "version"
    return ModelAge(info.name, info.version, alias, info.created_at, data_as_of, source, now)


def model_age(
    name: str,
    *,
    version: str | None = None,
    alias: str | None = None,
    now: datetime | None = None,
    tracking_uri: str | None = None,
) -> ModelAge:
    """Age and data age of ``name`` at ``version`` or ``alias`` (exactly one of them)."""
    if (version is None) == (alias is None):
        msg = "give exactly one of version or alias"
        raise InvalidArgumentError(msg)
    client, _ = client_for(tracking_uri)
    when = now or datetime.now(tz=UTC)
    label = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    with mlflow_errors(f"cannot find {label}"):
        if alias is not None:
            raw = client.get_model_version_by_alias(name, alias)
        else:
            raw = client.get_model_version(name, str(version))
        return _age_of(client, version_info(raw), alias, when)


def variant_ages(
    spec: ExperimentSpec, *, now: datetime | None = None, tracking_uri: str | None = None
) -> dict[str, ModelAge]:
    """Model age and data age of every registry-backed variant of an experiment, by variant.

    Variants served from files, URLs or Python factories have no registry timestamps and
    are left out.
    """
    client, _ = client_for(tracking_uri)
    when = now or datetime.now(tz=UTC)
    ages: dict[str, ModelAge] = {}
    for variant in spec.variants:
        try:
            ref = parse_reference(variant.model)
        except InvalidArgumentError:
            continue
        if ref.kind == "run":
            continue
        with mlflow_errors(f"cannot find {variant.model} for variant {variant.name!r}"):
            info = version_info(lookup_version(client, ref))
            ages[variant.name] = _age_of(client, info, ref.alias, when)
    return ages


def stale_models(
    max_age: timedelta,
    *,
    alias: str = "champion",
    max_data_age: timedelta | None = None,
    names: Iterable[str] | None = None,
    now: datetime | None = None,
    tracking_uri: str | None = None,
) -> list[StaleModel]:
    """Versions behind ``alias`` older than ``max_age`` (or with data older than ``max_data_age``).

    Models without the alias are skipped; each stale one is logged at WARNING on the
    ``abflow.registry`` logger, so an alerting pipeline sees it without extra wiring.
    """
    if max_age <= timedelta(0) or (max_data_age is not None and max_data_age <= timedelta(0)):
        msg = "staleness limits must be positive durations"
        raise InvalidArgumentError(msg)
    client, _ = client_for(tracking_uri)
    when = now or datetime.now(tz=UTC)
    found: list[StaleModel] = []
    with mlflow_errors("cannot check model staleness"):
        if names is None:
            names = sorted(str(m.name) for m in client.search_registered_models(max_results=1000))
        for name in names:
            try:
                raw = client.get_model_version_by_alias(name, alias)
            except Exception as exc:
                if is_not_found(exc):
                    continue
                raise
            age = _age_of(client, version_info(raw), alias, when)
            reasons = []
            if age.age_seconds > max_age.total_seconds():
                reasons.append(f"model is {_days(age.age_seconds)} old (limit {_days(max_age)})")
            if max_data_age is not None and age.data_age_seconds > max_data_age.total_seconds():
                reasons.append(
                    f"data is {_days(age.data_age_seconds)} old (limit {_days(max_data_age)})"
                )
            if reasons:
                stale = StaleModel(age, tuple(reasons))
                logger.warning("stale model %s@%s v%s: %s", name, alias, age.version, reasons)
                found.append(stale)
    return found


def _days(value: float | timedelta) -> str:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """What a retrain hook answered for one stale model."""

    name: str
    version: str
    ok: bool
    detail: str


class RetrainHook(Protocol):
    """Asked to retrain one stale model; never raises for a failed call, it reports it."""

    def __call__(self, stale: StaleModel) -> RetrainResult: ...


@dataclass(frozen=True, slots=True)
class ShellRetrainHook:
    """Run a command with the stale model as JSON on stdin and as ``ABFLOW_MODEL_*`` env vars."""

    command: Sequence[str]
    timeout_seconds: float = 300.0

    def __call__(self, stale: StaleModel) -> RetrainResult:
        payload = stale.payload()
        env = dict(os.environ)
        env.update(
            {
                "ABFLOW_MODEL_NAME": stale.age.name,
                "ABFLOW_MODEL_VERSION": stale.age.version,
                "ABFLOW_MODEL_ALIAS": stale.age.alias or "",
                "ABFLOW_STALE_REASONS": "; ".join(stale.reasons),
            }
        )
        try:
            # The operator configured this command; it runs without a shell.
            done = subprocess.run(
                list(self.command),
                input=orjson.dumps(payload),
                capture_output=True,
                env=env,
                timeout=self.timeout_seconds,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return RetrainResult(stale.age.name, stale.age.version, False, str(exc))
        output = (done.stdout or done.stderr).decode(errors="replace").strip()[-500:]
        ok = done.returncode == 0
        detail = output if ok else f"exit code {done.returncode}: {output}"
        return RetrainResult(stale.age.name, stale.age.version, ok, detail)


@dataclass(frozen=True, slots=True)
class WebhookRetrainHook:
    """POST the stale model as JSON to a URL (a CI pipeline trigger, an orchestrator API)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 10.0

    def __call__(self, stale: StaleModel) -> RetrainResult:
        import httpx

        try:
            response = httpx.post(
                self.url,
                content=orjson.dumps(stale.payload()),
                headers={"content-type": "application/json", **self.headers},
                timeout=self.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            return RetrainResult(stale.age.name, stale.age.version, False, str(exc))
        ok = response.is_success
        detail = f"HTTP {response.status_code}: {response.text.strip()[:500]}"
        return RetrainResult(stale.age.name, stale.age.version, ok, detail)


def retrain_hook(target: str, *, headers: Mapping[str, str] | None = None) -> RetrainHook:
    """A hook from configuration: an ``http(s)://`` URL is a webhook, anything else a command."""
    text = target.strip()
    if not text:
        msg = "a retrain hook needs a command or a webhook URL"
        raise InvalidArgumentError(msg)
    if text.startswith(("http://", "https://")):
        return WebhookRetrainHook(text, headers=dict(headers or {}))
    return ShellRetrainHook(shlex.split(text))


def trigger_retrain(stale: Iterable[StaleModel], hook: RetrainHook) -> list[RetrainResult]:
    """Call ``hook`` for each stale model; failures are logged and returned, never raised."""
    results = []
    for model in stale:
        result = hook(model)
        level = logging.INFO if result.ok else logging.ERROR
        logger.log(level, "retrain %s v%s: %s", result.name, result.version, result.detail)
        results.append(result)
    return results
