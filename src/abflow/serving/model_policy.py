"""Which model references a spec from outside the operator's config file may name.

Loading a model runs code or makes traffic: ``python:`` imports a module and calls into it,
``file:`` unpickles a file, ``runs:/`` loads an MLflow folder from any run path (its flavour
may unpickle), and ``http(s)://`` makes the gateway send features to a host. So only the
operator's config file may name such references freely. A spec from anyone else — ``POST
/v1/experiments`` (whatever the token's role, admin too: a leaked token must not be remote
code execution) or a spec read back from the store, which API and CLI callers write — may
name only:

* registry models (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``): the registry is the
  operator's, and what enters it is reviewed there;
* ``http(s)://`` endpoints whose host and port are on ``allowed_model_hosts``;
* references the config file itself names (in an experiment, or as a key of ``backends``):
  they load nothing the operator did not choose.

:func:`check_spec` applies this table to every variant (served or shadow) before anything
is imported, opened, unpickled or contacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from abflow.errors import InvalidArgumentError, PermissionDeniedError

if TYPE_CHECKING:
    from abflow.spec import ExperimentSpec

__all__ = [
    "RULES",
    "ModelPolicy",
    "check_spec",
    "parse_host_entry",
    "refusal",
]

Kind = Literal["registry", "endpoint", "code"]

_REGISTRY = re.compile(r"^models:/[^/@\s]+(/\d+|/latest|@[A-Za-z0-9_\-]+)$")
"""A registered model version or alias (the spec's own pattern), nothing else under models:/."""

_KINDS: tuple[tuple[str, Kind], ...] = (
    ("http://", "endpoint"),
    ("https://", "endpoint"),
    ("python:", "code"),
    ("file:", "code"),
    ("runs:/", "code"),
)
"""Reference prefix → kind; anything not listed is treated as code (refused)."""

RULES: dict[str, str] = {
    "code_from_config_only": "python:, file:, runs:/ (and unknown) references come only from "
    "the operator's config file",
    "model_host_not_allowed": "http(s) endpoints only on an allowed_model_hosts host:port",
}
"""Every refusal names one of these rules (docs/gateway.md lists them)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_ENTRY = re.compile(
    r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?))"
    r"(?::(?P<port>\d{1,5}))?$"
)


def parse_host_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port`` or ``[v6]:port`` as (lower-case host, port or None).

    A bare host allows only the scheme's default port (80, 443): another port on the same
    machine is another service, and is named explicitly.
    """
    match = _HOST_ENTRY.match(entry.strip())
    port = int(match["port"]) if match and match["port"] else None
    if match is None or (port is not None and not 0 < port <= 65535):
        msg = f"allowed_model_hosts: {entry!r} is not host, host:port or [ipv6]:port"
        raise InvalidArgumentError(msg)
    return (match["ipv6"] or match["host"]).lower(), port


def kind_of(reference: str) -> Kind:
    """What loading ``reference`` would do: ask the registry, call a host, or run code."""
    if _REGISTRY.match(reference):
        return "registry"
    return next((kind for prefix, kind in _KINDS if reference.startswith(prefix)), "code")


def refusal(field: str, rule: str, reason: str) -> PermissionDeniedError:
    """The 403 every refusal is: the field first, then the rule's name, then why."""
    if rule not in RULES:
        msg = f"no model policy rule {rule!r}"
        raise InvalidArgumentError(msg)
    msg = f"{field}: refused by rule {rule}: {reason}"
    return PermissionDeniedError(msg)


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """Allowed endpoint hosts and the references the operator's config file names.

    The default (nothing allowed beyond the registry) is what an unconfigured gateway gets:
    a policy that cannot be built never fails open.
    """

    allowed_hosts: frozenset[tuple[str, int | None]] = frozenset()
    operator_references: frozenset[str] = frozenset()

    @classmethod
    def build(cls, hosts: Iterable[str], operator_references: Iterable[str]) -> ModelPolicy:
        return cls(frozenset(map(parse_host_entry, hosts)), frozenset(operator_references))

    def check(self, reference: str, field: str) -> None:
        """PermissionDeniedError naming ``field`` and the rule unless ``reference`` may load."""
        if reference in self.operator_references:
            return
        kind = kind_of(reference)
        if kind == "registry":
            return
        if kind == "code":
            scheme = reference.split(":", 1)[0]
            reason = f"{scheme}: references come only from the operator's config file"
            raise refusal(field, "code_from_config_only", reason)
        self._check_endpoint(reference, field)

    def _check_endpoint(self, reference: str, field: str) -> None:
        import httpx  # the parser the HTTP backend connects with: no parser differential

        try:
            url = httpx.URL(reference)
        except httpx.InvalidURL:
            raise refusal(field, "model_host_not_allowed", "not a valid URL") from None
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
        host = url.host.lower()
        bare = (host, None) in self.allowed_hosts and port == _DEFAULT_PORTS.get(url.scheme)
        if not bare and (host, port) not in self.allowed_hosts:
            shown = f"[{host}]" if ":" in host else host
            reason = f"{shown}:{port} is not in allowed_model_hosts"
            raise refusal(field, "model_host_not_allowed", reason)


def check_spec(spec: ExperimentSpec, policy: ModelPolicy) -> None:
    """Refuse ``spec`` (PermissionDeniedError, every bad field named) unless each variant's
    model may load under ``policy``; call before anything is loaded."""
    problems: list[str] = []
    for index, variant in enumerate(spec.variants):
        try:
            policy.check(variant.model, f"variants[{index}].model")
        except PermissionDeniedError as exc:
            problems.append(str(exc))
    if problems:
        msg = "; ".join(problems)
        raise PermissionDeniedError(msg)
