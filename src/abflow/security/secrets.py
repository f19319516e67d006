"""Secret references in settings: ``env:NAME``, ``file:PATH`` and ``vault:MOUNT/PATH#FIELD``.

A setting that holds a credential (the store URL, say) can name where the credential lives
instead of containing it, so config files and manifests can be shared and committed:

    store_url: vault:secret/abflow/db#url        # KV version 2 (the default secrets engine)
    store_url: vault-kv1:kv/abflow/db#url         # a KV version 1 mount
    store_url: env:ABFLOW_DB_URL
    store_url: file:/run/secrets/db-url            # Docker / Kubernetes secret files

Anything else is taken literally. Vault is reached with its usual environment variables:
``VAULT_ADDR``; then ``VAULT_TOKEN``, or AppRole (``VAULT_ROLE_ID`` + ``VAULT_SECRET_ID``),
or Kubernetes auth (``VAULT_K8S_ROLE``, with the pod's service-account token); optional
``VAULT_NAMESPACE`` and ``VAULT_CACERT``. Errors name the reference, never the secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abflow.errors import ConfigError

__all__ = ["K8S_TOKEN_PATH", "is_secret_reference", "resolve_secret"]

K8S_TOKEN_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_SCHEMES = ("env:", "file:", "vault:", "vault-kv1:")


def is_secret_reference(value: str) -> bool:
    """Whether ``value`` names a secret rather than being one."""
    return value.startswith(_SCHEMES)


def resolve_secret(value: str, environ: Mapping[str, str] | None = None) -> str:
    """The secret ``value`` refers to, or ``value`` itself when it is not a reference."""
    environ = os.environ if environ is None else environ
    if value.startswith("env:"):
        name = value[4:]
        if name not in environ:
            msg = f"secret {value!r}: environment variable {name!r} is not set"
            raise ConfigError(msg)
        return environ[name]
    if value.startswith("file:"):
        return _read_file(value, Path(value[5:]))
    if value.startswith(("vault:", "vault-kv1:")):
        return _read_vault(value, environ)
    return value


def _read_file(reference: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        msg = f"secret {reference!r}: cannot read {str(path)!r} ({exc.strerror})"
        raise ConfigError(msg) from None
    except UnicodeDecodeError:  # its message would quote the secret's bytes
        msg = f"secret {reference!r}: {str(path)!r} is not UTF-8 text"
        raise ConfigError(msg) from None


def _split(reference: str) -> tuple[int, str, str, str]:
    scheme, _, rest = reference.partition(":")
    location, _, field = rest.partition("#")
    mount, _, path = location.strip("/").partition("/")
    if not (mount and path and field):
        msg = f"secret {reference!r}: expected {scheme}:MOUNT/PATH#FIELD"
        raise ConfigError(msg)
    return (1 if scheme == "vault-kv1" else 2), mount, path, field


def _read_vault(reference: str, environ: Mapping[str, str]) -> str:
    version, mount, path, field = _split(reference)
    client = _vault_client(reference, environ)
    import hvac.exceptions

    try:
        if version == 2:
            response = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
            data = response["data"]["data"]
        else:
            data = client.secrets.kv.v1.read_secret(path=path, mount_point=mount)["data"]
    except hvac.exceptions.InvalidPath:
        msg = f"secret {reference!r}: Vault has no secret at {mount}/{path}"
        raise ConfigError(msg) from None
    except hvac.exceptions.Forbidden:
        msg = f"secret {reference!r}: Vault denied access to {mount}/{path}"
        raise ConfigError(msg) from None
    except (hvac.exceptions.VaultError, OSError, KeyError, TypeError) as exc:
        msg = f"secret {reference!r}: reading from Vault failed ({type(exc).__name__})"
        raise ConfigError(msg) from None
    if not isinstance(data, dict) or field not in data:
        msg = f"secret {reference!r}: the secret at {mount}/{path} has no field {field!r}"
        raise ConfigError(msg)
    return str(data[field])


def _vault_client(reference: str, environ: Mapping[str, str]) -> Any:
    try:
        import hvac
        import hvac.exceptions
    except ImportError:
        msg = f"secret {reference!r}: reading from Vault needs hvac: pip install 'abflow[vault]'"
        raise ConfigError(msg) from None
    address = environ.get("VAULT_ADDR")
    if not address:
        msg = f"secret {reference!r}: set VAULT_ADDR to the Vault server's address"
        raise ConfigError(msg)
    verify: bool | str = environ.get("VAULT_CACERT") or True
    client = hvac.Client(
        url=address, namespace=environ.get("VAULT_NAMESPACE"), verify=verify, timeout=10
    )
    try:
        if environ.get("VAULT_TOKEN"):
            client.token = environ["VAULT_TOKEN"]
        elif environ.get("VAULT_ROLE_ID") and environ.get("VAULT_SECRET_ID"):
            client.auth.approle.login(
                role_id=environ["VAULT_ROLE_ID"], secret_id=environ["VAULT_SECRET_ID"]
            )
        elif environ.get("VAULT_K8S_ROLE"):
            jwt = _read_file(reference, Path(environ.get("VAULT_K8S_TOKEN_PATH", K8S_TOKEN_PATH)))
            client.auth.kubernetes.login(role=environ["VAULT_K8S_ROLE"], jwt=jwt)
        else:
            msg = (
                f"secret {reference!r}: no Vault credentials; set VAULT_TOKEN, "
                "VAULT_ROLE_ID and VAULT_SECRET_ID, or VAULT_K8S_ROLE"
            )
            raise ConfigError(msg)
    except (hvac.exceptions.VaultError, OSError) as exc:
        msg = f"secret {reference!r}: Vault login failed ({type(exc).__name__})"
        raise ConfigError(msg) from None
    return client
