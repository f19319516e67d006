"""Gateway settings (environment, ``ABFLOW_`` prefix) and the gateway config file.

Settings are process-level knobs, read once from the environment when the app is built.
The config file (YAML or JSON, ``--config`` / ``ABFLOW_CONFIG``) says what to serve:
experiments, per-model backend options, the store URL and pre-provisioned tokens::

    store_url: sqlite:///.abflow/abflow.db
    default_experiment: fraud-model-v2
    experiments:
      - examples/fraud.yaml             # a spec file, relative to this file
    shadow:
      fraud-model-v2: [challenger]       # mirrored, never answers
    backends:
      "http://10.0.0.5:8080/invocations": {timeout_ms: 200, version: "7"}
    tokens:
      - {name: checkout, role: service, token_hash: "<sha256 hex of the token>"}
    saved_groups:                        # for $inGroup / $notInGroup in conditions
      beta-testers: ["u-17", "u-42"]
    features:                            # one vector per request, for every variant
      fraud-model-v2:                    # (serving/features.py)
        feast: {repo: feature_repo/, entity_key: user_id, features: [user_stats:txn_count_7d]}
    monitor:                             # the live monitor, in the gateway (off by default)
      interval_seconds: 300
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import NoDecode, SettingsConfigDict

from abflow.errors import ConfigError, DocumentError, InvalidSpecError
from abflow.events.kafka import parse_kafka_url
from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions
from abflow.serving.features import FeatureSourceEntry, resolve_repo_paths
from abflow.serving.model_policy import ModelPolicy, parse_host_entry
from abflow.settings import Settings, read_document
from abflow.spec import ExperimentSpec, load_experiment, parse_experiment
from abflow.targeting.conditions import saved_group_ids

__all__ = [
    "GatewayConfig",
    "GatewaySettings",
    "MonitorConfig",
    "TokenEntry",
    "demo_config",
    "load_config",
    "monitor_interval",
    "policy_for",
]


def _host_entry(entry: str) -> str:
    parse_host_entry(entry)  # refuse a bad entry when settings are read, not at first use
    return entry.strip()


def _events_url(url: str | None) -> str | None:
    if url is not None:
        parse_kafka_url(url)  # Kafka is the one other sink: refuse anything else at start
    return url


def _host_list(value: Any) -> Any:
    """``ABFLOW_ALLOWED_MODEL_HOSTS``: a JSON list or comma-separated ``host:port`` entries."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return orjson.loads(text)
        return [entry for entry in text.split(",") if entry.strip()]
    return value


ModelHosts = Annotated[list[Annotated[str, AfterValidator(_host_entry)]], NoDecode]
"""Model endpoint hosts that specs from outside the config file may name (model_policy)."""


class GatewaySettings(Settings):
    """Process settings; every field can be set as ``ABFLOW_<FIELD>`` in the environment.

    The store and registry settings every part shares come from :class:`abflow.settings.Settings`.
    """

    model_config = SettingsConfigDict(env_prefix="ABFLOW_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    worker_start_timeout_seconds: int = Field(
        default=30,
        ge=1,
        description="with several workers: how long a worker may take to answer uvicorn's health "
        "check before it is killed and restarted (uvicorn's own 5 s is less than a worker's "
        "start on a busy machine); also how long a hung worker goes unnoticed",
    )
    config: Path | None = Field(default=None, description="gateway config file (YAML/JSON)")
    journal_dir: Path = Path(".abflow/journal")
    events_url: Annotated[str | None, AfterValidator(_events_url)] = Field(
        default=None,
        description="where the event log ships events: kafka://host:port/topic-prefix sends them "
        "to Kafka (load them with abflow ingest, docs/kafka.md); default: the store",
    )
    auth_enabled: bool = True
    token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="after this long a token in use is re-verified in the background: how "
        "long a revoked token may still pass while the store answers",
    )
    token_lookup_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="longest a request with a token never seen waits for the store (then 503)",
    )
    token_max_stale_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="while the store is unreachable, a token is admitted from memory for at "
        "most this long after it was last verified (then 503): bounds how long a revoked "
        "token may pass during an outage",
    )
    store_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="longest one PostgreSQL statement of the gateway may take "
        "(statement_timeout, and a watchdog for a connection that never answers)",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_rows: int = Field(default=1000, ge=1)
    batch_max_rows: int = Field(default=64, ge=1)
    batch_max_wait_ms: float = Field(default=2.0, ge=0)
    model_execution: Literal["auto", "thread", "loop"] = Field(
        default="auto",
        description="where in-process models run: their own thread (timeouts apply), the "
        "event loop, or auto (the loop while recent calls typically take under 2 ms)",
    )
    cache_enabled: bool = True
    cache_ttl_seconds: float = Field(default=60.0, gt=0)
    cache_max_entries: int = Field(default=10_000, ge=1)
    backend_timeout_ms: float = Field(default=1000.0, gt=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)
    shadow_max_in_flight: int = Field(default=256, ge=0)
    tracing_enabled: bool = False
    predict_fast_path: bool = Field(
        default=True, description="answer POST /v1/predict ahead of FastAPI's dispatch"
    )
    metrics_public: bool = Field(
        default=False, description="serve /metrics without a token (scrapers on a private network)"
    )
    ship_in_subprocess: bool = Field(
        default=True,
        description="write events to the store from a child process, so that store writes "
        "never hold the worker's GIL (the journal stays in the worker)",
    )
    drain_timeout_seconds: float = Field(default=10.0, ge=0)
    refresh_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how often to pick up experiments and newer versions from the store "
        "(rollouts, registrations on other workers or replicas, the CLI); 0: only at start",
    )
    allowed_model_hosts: Annotated[ModelHosts, BeforeValidator(_host_list)] = Field(
        default_factory=list,
        description="host:port of model servers that API-registered specs may call "
        "(comma-separated); empty: no http(s) references through the API",
    )
    recent_requests: int = Field(
        default=100_000, ge=0, description="request ids remembered to join outcomes to units"
    )
    monitor_interval_seconds: float | None = Field(
        default=None,
        ge=0,
        description="run the live monitor (drift, skew, quality) in the gateway every this many "
        "seconds, one process at a time across workers and replicas; 0: off; unset: the config "
        "file's monitor.interval_seconds (default off)",
    )


class TokenEntry(BaseModel):
    """A token provisioned by configuration: only its hash is written down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role
    token_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class MonitorConfig(BaseModel):
    """The live monitor run by the gateway (the options of ``abflow monitor``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_seconds: float = Field(
        default=0.0, ge=0, description="seconds between passes; 0: the gateway runs no monitor"
    )
    reference: Literal["auto", "window"] = Field(
        default="auto",
        description="auto: each variant's training sample when its model's run logged one, "
        "else the first sampled window; window: always the window",
    )
    lookback_windows: int = Field(default=48, ge=1, description="windows recomputed per pass")
    label_event: str = Field(default="label", description="outcome name of the labels")
    threshold: float = Field(
        default=0.5, description="score at or above which a prediction is positive"
    )


class GatewayConfig(BaseModel):
    """What the gateway serves: experiments, backend options, store and tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_url: str | None = None
    default_experiment: str | None = None
    experiments: list[ExperimentSpec] = Field(default_factory=list)
    shadow: dict[str, list[str]] = Field(default_factory=dict)
    backends: dict[str, BackendOptions] = Field(default_factory=dict)
    tokens: list[TokenEntry] = Field(default_factory=list)
    allowed_model_hosts: ModelHosts = Field(default_factory=list)
    saved_groups: dict[str, list[str | int | float | bool]] = Field(
        default_factory=dict,
        description="group id -> members, for $inGroup / $notInGroup in experiment conditions",
    )
    features: dict[str, FeatureSourceEntry] = Field(
        default_factory=dict, description="experiment key -> its feature source (inline or feast)"
    )
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)


def load_config(path: Path) -> GatewayConfig:
    """Read a config file; spec paths in ``experiments`` are relative to the file."""
    try:
        data = read_document(path)
    except DocumentError as exc:
        msg = f"config {str(path)!r}: {exc.problem}"
        raise ConfigError(msg) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        msg = f"config {str(path)!r} must be a mapping of fields"
        raise ConfigError(msg)
    listed = data.get("experiments") or []
    if not isinstance(listed, list):
        msg = f"config {str(path)!r}: experiments: a list of specs or spec file paths"
        raise ConfigError(msg)
    specs: list[ExperimentSpec] = []
    for index, item in enumerate(listed):
        if isinstance(item, str):
            specs.append(load_experiment(path.parent / item))
        else:
            try:
                specs.append(parse_experiment(item, f"{path}: experiments[{index}]"))
            except InvalidSpecError as exc:
                raise ConfigError(str(exc)) from None
    data = {**data, "experiments": specs}
    if "features" in data:
        data["features"] = resolve_repo_paths(data["features"], path.parent)
    return build_config(data, str(path))


def build_config(data: dict[str, Any], source: str = "config") -> GatewayConfig:
    """Validate a decoded config, with one clear error naming the bad field."""
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = f"{source}: {where}: {first['msg']}"
        raise ConfigError(msg) from None
    keys = [spec.key for spec in config.experiments]
    if len(set(keys)) != len(keys):
        msg = f"{source}: experiment keys must be unique, got {keys}"
        raise ConfigError(msg)
    if config.default_experiment is not None and config.default_experiment not in keys:
        msg = f"{source}: default_experiment {config.default_experiment!r} is not one of {keys}"
        raise ConfigError(msg)
    for experiment in config.experiments:
        undefined = sorted(saved_group_ids(experiment.condition) - config.saved_groups.keys())
        if undefined:
            msg = (
                f"{source}: experiment {experiment.key!r}: condition names saved group "
                f"{undefined[0]!r}, which saved_groups does not define (it would match nobody)"
            )
            raise ConfigError(msg)
    for key, names in config.shadow.items():
        spec = next((s for s in config.experiments if s.key == key), None)
        if spec is None:
            msg = f"{source}: shadow.{key}: no such experiment"
            raise ConfigError(msg)
        for name in names:
            if name not in spec.variant_names[1:]:
                msg = f"{source}: shadow.{key}: {name!r} is not a challenger of {key!r}"
                raise ConfigError(msg)
    for key in config.features:
        if key not in keys:
            msg = f"{source}: features.{key}: no such experiment"
            raise ConfigError(msg)
    return config


def demo_config() -> GatewayConfig:
    """What ``abflow serve`` runs with no config: a demo experiment on two bundled models."""
    spec = parse_experiment(
        {
            "key": "demo",
            "name": "Demo: two logistic regressions on synthetic data",
            "unit": "user_id",
            "variants": [
                {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
                {"name": "challenger", "model": "python:abflow.serving.demo_models:challenger"},
            ],
            "weights": [0.5, 0.5],
            "metrics": [
                {
                    "name": "conversion",
                    "kind": "conversion",
                    "event": "converted",
                    "role": "primary",
                }
            ],
        },
        "demo",
    )
    return GatewayConfig(experiments=[spec], default_experiment="demo")


def policy_for(settings: GatewaySettings, config: GatewayConfig) -> ModelPolicy:
    """The policy of a gateway: hosts from ``ABFLOW_ALLOWED_MODEL_HOSTS`` and the config
    file, references from the config file's experiments and ``backends`` keys."""
    references = {v.model for spec in config.experiments for v in spec.variants}
    references.update(config.backends)
    hosts = [*settings.allowed_model_hosts, *config.allowed_model_hosts]
    return ModelPolicy.build(hosts, references)


def monitor_interval(settings: GatewaySettings, config: GatewayConfig) -> float:
    """Seconds between the gateway's monitor passes (0: none): the setting, else the file's."""
    if settings.monitor_interval_seconds is not None:
        return settings.monitor_interval_seconds
    return config.monitor.interval_seconds
