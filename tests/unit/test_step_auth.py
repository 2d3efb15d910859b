"""The credential chain, driven through the factories seam with fake Azure credential objects."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.config import Config

from aml_databricks.errors import AuthError
from aml_databricks.step.auth import (
    AZURE_DATABRICKS_SCOPE,
    AzureFactories,
    CredentialSources,
    resolve_credentials,
)
from aml_databricks.step.gateway import client_config
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

        return AzureFactories(
            default_credential=lambda: FakeCredential("default"),
            managed_identity=managed,
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


def test_service_principal_from_arm_variables_uses_the_sdks_azure_client_secret() -> None:
    fakes = Fakes(az=True)
    c = creds({}, SP_ENV, fakes)
    assert c.kind == "service-principal" and fakes.built == []
    assert c.config_kwargs() == {
        "auth_type": "azure-client-secret",
        "azure_tenant_id": "t",
        "azure_client_id": "sp-id",
        "azure_client_secret": "sp-secret-value",
    }
    assert "sp-secret-value" not in repr(c) and "sp-secret-value" in c.secret_values


def test_azure_cli_last_and_only_when_az_is_on_path() -> None:
    c = creds({}, {}, Fakes(az=True))
    assert c.kind == "azure-cli" and c.config_kwargs() == {"auth_type": "azure-cli"}
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


def test_the_managed_identity_strategy_asks_its_credential_for_each_request() -> None:
    """azure-identity caches and refreshes managed identity tokens itself; the strategy only asks."""
    fakes = Fakes()
    c = creds({}, {"DEFAULT_IDENTITY_CLIENT_ID": "mi"}, fakes)
    assert c.strategy is not None
    headers = c.strategy(Config.__new__(Config))
    assert headers()["Authorization"] != headers()["Authorization"]  # the fake hands out a new one each time


# --- databricks-sdk's own strategies, for real: a fake `az` on PATH, an unreachable Entra ID -----

AZURE_HOST = "https://adb-1.2.azuredatabricks.net"
FAKE_AZ = """#!{python}
import base64, json, sys
open({calls!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
if {fail!r}:
    sys.stderr.write("ERROR: Please run 'az login' to setup account.\\n")
    sys.exit(1)
if sys.argv[1:3] == ["account", "show"]:
    print(json.dumps({{"user": {{"type": "user", "name": "me@example.com"}}}}))
else:
    claims = base64.urlsafe_b64encode(json.dumps({{"upn": "me@example.com"}}).encode()).decode().rstrip("=")
    print(json.dumps({{"accessToken": "e30." + claims + ".sig", "tokenType": "Bearer",
                      "expiresOn": "2099-01-01 00:00:00.000000"}}))
"""


def fake_az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> Path:
    calls = tmp_path / "az-calls.txt"
    script = tmp_path / "bin" / "az"
    script.parent.mkdir()
    script.write_text(FAKE_AZ.format(python=sys.executable, calls=str(calls), fail=fail))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ARM_TENANT_ID", "tenant-1")  # else the SDK asks the (unreachable) workspace for it
    for name in ("DATABRICKS_TOKEN", "ARM_CLIENT_ID", "ARM_CLIENT_SECRET", "DATABRICKS_HOST"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_azure_cli_tokens_come_from_the_sdks_strategy_through_az(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_az(tmp_path, monkeypatch)
    c = creds({"auth": "azure-cli"}, {}, Fakes(az=True))
    config = client_config(AZURE_HOST, c, retry_budget=1)
    assert config.authenticate()["Authorization"].startswith("Bearer e30.")
    asked = calls.read_text()
    assert f"account get-access-token --resource {AZURE_DATABRICKS_SCOPE.split('/')[0]}" in asked
    assert "--tenant tenant-1" in asked


def test_azure_cli_not_logged_in_is_an_auth_error_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_az(tmp_path, monkeypatch, fail=True)
    c = creds({"auth": "azure-cli"}, {}, Fakes(az=True))
    with pytest.raises(AuthError) as caught:
        client_config(AZURE_HOST, c, retry_budget=1)
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert message.startswith("could not configure the Databricks client (azure-cli): ")
    assert "az login" in message


def test_a_service_principal_that_cannot_get_a_token_fails_at_connect_with_exit_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, Entra ID is unreachable: the SDK's azure-client-secret strategy fails at once, in one
    line that names the kind and never the secret."""
    for name in ("DATABRICKS_TOKEN", "DATABRICKS_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens: no real request leaves
    c = creds({}, SP_ENV, Fakes())
    with pytest.raises(AuthError) as caught:
        client_config(AZURE_HOST, c, retry_budget=1)
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert "(service-principal)" in message and "sp-secret-value" not in message
