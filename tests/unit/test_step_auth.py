"""The credential chain, driven through the factories seam with fake Azure credential objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from databricks.sdk.config import Config

from aml_databricks.errors import AuthError
from aml_databricks.step.auth import (
    AZURE_DATABRICKS_SCOPE,
    AzureFactories,
    CredentialSources,
    EntraTokenCache,
    resolve_credentials,
)
from aml_databricks.step.settings import resolve

HOST = {"databricks_host": "https://adb-1.2.azuredatabricks.net", "notebook_path": "/nb", "existing_cluster_id": "c"}
KV = {"keyvault_url": "https://kv.vault.azure.net/", "keyvault_secret_name": "ADBPAT"}
SP_ENV = {"ARM_TENANT_ID": "t", "ARM_CLIENT_ID": "sp-id", "ARM_CLIENT_SECRET": "sp-secret-value"}


@dataclass
class FakeToken:
    token: str
    expires_on: int


@dataclass
class FakeCredential:
    name: str
    fail: Exception | None = None
    expires_on: int = 10**10
    scopes: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes: str, **kwargs: Any) -> FakeToken:
        self.scopes.append(scopes)
        if self.fail:
            raise self.fail
        return FakeToken(f"entra-token-from-{self.name}-{len(self.scopes)}", self.expires_on)


@dataclass
class FakeSecret:
    value: str | None


class FakeSecretClient:
    def __init__(self, secrets: dict[str, str], calls: list[Any]) -> None:
        self.secrets, self.calls = secrets, calls

    def get_secret(self, name: str) -> FakeSecret:
        self.calls.append(name)
        if name not in self.secrets:
            raise type("ResourceNotFoundError", (Exception,), {})(f"A secret with (name/id) {name} was not found")
        return FakeSecret(self.secrets[name])


@dataclass
class Fakes:
    secrets: dict[str, str] = field(default_factory=lambda: {"ADBPAT": "dapi-from-keyvault"})
    az: bool = False
    msi_fail: Exception | None = None
    built: list[tuple[str, Any]] = field(default_factory=list)

    def factories(self) -> AzureFactories:
        def secret_client(url: str, credential: Any) -> FakeSecretClient:
            self.built.append(("secret_client", (url, credential.name)))
            return FakeSecretClient(self.secrets, [])

        def managed(client_id: str | None) -> FakeCredential:
            self.built.append(("managed_identity", client_id))
            return FakeCredential("msi", fail=self.msi_fail)

        def client_secret(tenant: str, client_id: str, secret: str) -> FakeCredential:
            self.built.append(("client_secret", (tenant, client_id)))
            return FakeCredential("sp")

        return AzureFactories(
            default_credential=lambda: FakeCredential("default"),
            managed_identity=managed,
            client_secret=client_secret,
            azure_cli=lambda: FakeCredential("cli"),
            secret_client=secret_client,
            az_on_path=lambda: self.az,
        )


def creds(flags: dict[str, Any], env: dict[str, str], fakes: Fakes | None = None):  # type: ignore[no-untyped-def]
    fakes = fakes or Fakes()
    return resolve_credentials(CredentialSources.from_settings(resolve({**HOST, **flags}, env)), env, fakes.factories())


def test_databricks_token_comes_first() -> None:
    c = creds(KV, {"DATABRICKS_TOKEN": "dapi-env", "DEFAULT_IDENTITY_CLIENT_ID": "x", **SP_ENV})
    assert c.kind == "databricks-token" and c.token == "dapi-env"
    assert c.config_kwargs() == {"token": "dapi-env", "auth_type": "pat"}


def test_keyvault_pat_uses_default_azure_credential() -> None:
    fakes = Fakes()
    c = creds(KV, {"DEFAULT_IDENTITY_CLIENT_ID": "x"}, fakes)
    assert (c.kind, c.token) == ("keyvault-pat", "dapi-from-keyvault")
    assert fakes.built == [("secret_client", ("https://kv.vault.azure.net/", "default"))]


def test_keyvault_secret_missing_is_an_auth_error_naming_vault_and_secret() -> None:
    with pytest.raises(AuthError) as caught:
        creds(KV, {}, Fakes(secrets={}))
    assert "'ADBPAT'" in str(caught.value) and "kv.vault.azure.net" in str(caught.value)
    assert "secret not found" in str(caught.value)
    assert caught.value.exit_code == 3


def test_managed_identity_with_client_id_from_azure_ml() -> None:
    fakes = Fakes()
    c = creds({}, {"DEFAULT_IDENTITY_CLIENT_ID": "mi-client", **SP_ENV}, fakes)
    assert c.kind == "managed-identity" and c.token is None
    assert fakes.built == [("managed_identity", "mi-client")]
    # the strategy plugs into databricks-sdk and yields a bearer header for the Databricks scope
    assert c.strategy is not None and c.strategy.auth_type() == "managed-identity"
    # (no Config here: building one probes the host over the network)
    headers = c.strategy(Config.__new__(Config))()
    assert headers["Authorization"].startswith("Bearer entra-token-from-msi")


def test_managed_identity_failure_is_reported_not_skipped() -> None:
    fakes = Fakes(msi_fail=RuntimeError("ManagedIdentityCredential authentication unavailable\nmore"))
    with pytest.raises(AuthError) as caught:
        creds({}, {"DEFAULT_IDENTITY_CLIENT_ID": "mi", **SP_ENV}, fakes)
    assert "managed-identity" in str(caught.value) and "\n" not in str(caught.value)


def test_service_principal_from_arm_variables() -> None:
    fakes = Fakes(az=True)
    c = creds({}, SP_ENV, fakes)
    assert c.kind == "service-principal"
    assert fakes.built == [("client_secret", ("t", "sp-id"))]
    assert "sp-secret-value" not in repr(c)


def test_azure_cli_last_and_only_when_az_is_on_path() -> None:
    assert creds({}, {}, Fakes(az=True)).kind == "azure-cli"
    with pytest.raises(AuthError) as caught:
        creds({}, {}, Fakes(az=False))
    assert "no Databricks credential found" in str(caught.value)


def test_auth_flag_forces_a_source() -> None:
    c = creds({"auth": "azure-cli"}, {"DATABRICKS_TOKEN": "dapi-env"}, Fakes())
    assert c.kind == "azure-cli"
    with pytest.raises(AuthError, match="DATABRICKS_TOKEN is not set"):
        creds({"auth": "databricks-token"}, {}, Fakes())
    with pytest.raises(AuthError, match="needs --keyvault-url"):
        creds({"auth": "keyvault-pat"}, {}, Fakes())


def test_credentials_repr_never_shows_the_token() -> None:
    c = creds({}, {"DATABRICKS_TOKEN": "dapi-secret-123"})
    assert "dapi-secret-123" not in repr(c) and "dapi-secret-123" in c.secret_values


def test_entra_token_cache_refreshes_before_expiry() -> None:
    now = [1000.0]
    credential = FakeCredential("cli", expires_on=1000 + 3600)
    cache = EntraTokenCache(credential, clock=lambda: now[0])
    first = cache.token()
    assert cache.token() == first and len(credential.scopes) == 1
    assert credential.scopes[0] == (AZURE_DATABRICKS_SCOPE,)
    now[0] += 3600 - 299  # inside the refresh margin
    assert cache.token() != first and len(credential.scopes) == 2
