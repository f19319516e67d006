"""Secret references: env, file, and Vault through the real hvac client (Vault stand-in)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vault_stand_in import VaultStandIn

from abflow.errors import ConfigError
from abflow.security.secrets import is_secret_reference, resolve_secret

pytest.importorskip("hvac")

DB_URL = "postgresql+psycopg://abflow:pa55word@db:5432/abflow"


@pytest.fixture
def vault() -> Iterator[VaultStandIn]:
    with VaultStandIn() as server:
        server.kv2["secret"] = {"abflow/db": {"url": DB_URL, "port": 5432}}
        server.kv1["kv"] = {"abflow/db": {"url": DB_URL + "?v1"}}
        yield server


def test_literals_pass_through_and_references_are_recognised() -> None:
    assert resolve_secret("sqlite:///.abflow/abflow.db") == "sqlite:///.abflow/abflow.db"
    assert is_secret_reference("vault:secret/x#y")
    assert not is_secret_reference("postgresql://u:p@h/db")


def test_environment_and_file_references(tmp_path: Path) -> None:
    assert resolve_secret("env:DB", {"DB": DB_URL}) == DB_URL
    with pytest.raises(ConfigError, match="environment variable 'DB' is not set"):
        resolve_secret("env:DB", {})
    secret = tmp_path / "db-url"
    secret.write_text(DB_URL + "\n")
    assert resolve_secret(f"file:{secret}") == DB_URL
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_secret(f"file:{tmp_path / 'missing'}")


def test_vault_kv2_and_kv1_with_a_token(vault: VaultStandIn) -> None:
    env = {"VAULT_ADDR": vault.address, "VAULT_TOKEN": "root-token", "VAULT_NAMESPACE": "team-ml"}
    assert resolve_secret("vault:secret/abflow/db#url", env) == DB_URL
    assert resolve_secret("vault:secret/abflow/db#port", env) == "5432"
    assert resolve_secret("vault-kv1:kv/abflow/db#url", env) == DB_URL + "?v1"
    method, path, token, namespace = vault.requests[0]
    assert (method, path.split("?")[0], token, namespace) == (
        "GET", "/v1/secret/data/abflow/db", "root-token", "team-ml",
    )  # fmt: skip


def test_vault_approle_and_kubernetes_logins(vault: VaultStandIn, tmp_path: Path) -> None:
    approle = {
        "VAULT_ADDR": vault.address,
        "VAULT_ROLE_ID": "role-1",
        "VAULT_SECRET_ID": "secret-1",
    }
    assert resolve_secret("vault:secret/abflow/db#url", approle) == DB_URL
    assert vault.requests[-1][2] == "approle-token"
    jwt = tmp_path / "token"
    jwt.write_text("service-account-jwt")
    k8s = {
        "VAULT_ADDR": vault.address,
        "VAULT_K8S_ROLE": "abflow",
        "VAULT_K8S_TOKEN_PATH": str(jwt),
    }
    assert resolve_secret("vault:secret/abflow/db#url", k8s) == DB_URL
    assert vault.requests[-1][2] == "k8s-token"


@pytest.mark.parametrize(
    ("reference", "env_update", "message"),
    [
        ("vault:secret/abflow/nope#url", {}, "Vault has no secret at secret/abflow/nope"),
        ("vault:secret/abflow/db#user", {}, "has no field 'user'"),
        ("vault:secret/abflow/db#url", {"VAULT_TOKEN": "wrong"}, "Vault denied access"),
        ("vault:secret#url", {}, "expected vault:MOUNT/PATH#FIELD"),
        ("vault:secret/abflow/db", {}, "expected vault:MOUNT/PATH#FIELD"),
        ("vault:secret/abflow/db#url", {"VAULT_TOKEN": ""}, "no Vault credentials"),
        (
            "vault:secret/abflow/db#url",
            {"VAULT_TOKEN": "", "VAULT_ROLE_ID": "role-1", "VAULT_SECRET_ID": "bad"},
            "Vault login failed",
        ),
    ],
)
def test_vault_errors_name_the_reference_never_the_secret(
    vault: VaultStandIn, reference: str, env_update: dict[str, str], message: str
) -> None:
    env = {"VAULT_ADDR": vault.address, "VAULT_TOKEN": "root-token", **env_update}
    with pytest.raises(ConfigError, match=message) as caught:
        resolve_secret(reference, env)
    assert DB_URL not in str(caught.value)
    assert "pa55word" not in str(caught.value)


def test_vault_needs_an_address() -> None:
    with pytest.raises(ConfigError, match="set VAULT_ADDR"):
        resolve_secret("vault:secret/abflow/db#url", {"VAULT_TOKEN": "t"})


def test_unreachable_vault_is_a_clear_error() -> None:
    env = {"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "t"}
    with pytest.raises(ConfigError, match="reading from Vault failed"):
        resolve_secret("vault:secret/abflow/db#url", env)


def test_a_secret_file_that_is_not_text_is_a_clear_error(tmp_path: Path) -> None:
    binary = tmp_path / "key.der"
    binary.write_bytes(b"\x30\x82\xff\xfe secret bytes")
    with pytest.raises(ConfigError, match="not UTF-8 text") as caught:
        resolve_secret(f"file:{binary}")
    assert "secret bytes" not in str(caught.value)


def test_a_store_url_can_live_in_vault(
    vault: VaultStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abflow.store import EventStore
    from abflow.store.engine import display_url, resolve_url

    store_url = f"sqlite:///{tmp_path / 'from-vault.db'}"
    vault.kv2["secret"]["abflow/store"] = {"url": store_url}
    monkeypatch.setenv("VAULT_ADDR", vault.address)
    monkeypatch.setenv("VAULT_TOKEN", "root-token")
    monkeypatch.setenv("ABFLOW_STORE_URL", "vault:secret/abflow/store#url")
    assert resolve_url() == store_url
    with EventStore.open() as store:
        assert store.url == display_url(store_url)
    assert (tmp_path / "from-vault.db").exists()
    reads = [r for r in vault.requests if r[1].startswith("/v1/secret/data/abflow/store")]
    resolve_url()
    assert len(
        [r for r in vault.requests if r[1].startswith("/v1/secret/data/abflow/store")]
    ) == len(reads)  # cached


def test_a_bad_store_reference_is_a_store_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from abflow.errors import StoreError
    from abflow.store.engine import resolve_url

    monkeypatch.delenv("ABFLOW_DB_URL_FOR_TEST", raising=False)
    with pytest.raises(StoreError, match="ABFLOW_DB_URL_FOR_TEST"):
        resolve_url("env:ABFLOW_DB_URL_FOR_TEST")
