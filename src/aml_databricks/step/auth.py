"""Credentials for the Databricks workspace: a chain of sources, each naming itself.

Order (`--auth auto`), the first *configured* source is used:
  1. databricks-token    DATABRICKS_TOKEN
  2. keyvault-pat        a PAT in Key Vault: --keyvault-url + --keyvault-secret-name, read with
                         azure-identity's DefaultAzureCredential (the demo's way)
  3. managed-identity    the Azure ML compute's identity, an Entra ID token, no PAT; client id from
                         --managed-identity-client-id / DEFAULT_IDENTITY_CLIENT_ID (a compute can
                         carry several identities, so the id is never guessed)
  4. service-principal   ARM_CLIENT_ID + ARM_CLIENT_SECRET + ARM_TENANT_ID, an Entra ID token
  5. azure-cli           `az` on PATH and logged in, an Entra ID token
A configured source that fails is an error, not a reason to try the next one: silently falling
back would hide a misconfiguration behind a different identity. `--auth KIND` forces one source.

Who fetches the Entra ID tokens:
  - service principal and Azure CLI: databricks-sdk's own `azure-client-secret` and `azure-cli`
    strategies (they pick the Azure cloud's login endpoint from the host, cache and refresh the
    token, and add the management-token header Azure Databricks wants); `connect` asks for the
    first token at once, so a bad secret or a missing `az login` fails there with exit 3;
  - managed identity: azure-identity's ManagedIdentityCredential (databricks-sdk for Python has
    no `azure-msi`), which caches its tokens, behind a small `CredentialsStrategy`;
  - Key Vault: azure-identity and azure-keyvault-secrets.
The log names the kind; values never leave this module except as the Authorization header.

Azure classes are reached through `AzureFactories`, so tests hand in fakes; the defaults import
azure-identity and azure-keyvault-secrets lazily (only the chosen source pays for its import).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aml_databricks.errors import AuthError, first_line
from aml_databricks.step.settings import Settings  # only for CredentialSources.from_settings

if TYPE_CHECKING:
    from databricks.sdk.config import Config
    from databricks.sdk.credentials_provider import CredentialsStrategy

# The AzureDatabricks first-party application: tokens for this scope are accepted by every
# Azure Databricks workspace the identity is a member of.
AZURE_DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"


class AccessToken(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredential(Protocol):
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken: ...


class SecretReader(Protocol):
    def get_secret(self, name: str) -> Any: ...


@dataclass(frozen=True)
class AzureFactories:
    """Where the Azure credential objects come from; tests replace these with fakes."""

    default_credential: Callable[[], TokenCredential]
    managed_identity: Callable[[str | None], TokenCredential]
    secret_client: Callable[[str, TokenCredential], SecretReader]  # vault url, credential
    az_on_path: Callable[[], bool]


def real_factories() -> AzureFactories:
    def default_credential() -> TokenCredential:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def managed_identity(client_id: str | None) -> TokenCredential:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()

    def secret_client(vault_url: str, credential: TokenCredential) -> SecretReader:
        from azure.keyvault.secrets import SecretClient

        return SecretClient(vault_url=vault_url, credential=credential)  # type: ignore[arg-type]

    return AzureFactories(
        default_credential=default_credential,
        managed_identity=managed_identity,
        secret_client=secret_client,
        az_on_path=lambda: shutil.which("az") is not None,
    )


@dataclass(frozen=True)
class CredentialSources:
    """Where to look for a credential (never the credential itself): the four settings auth reads."""

    auth: str = "auto"  # a kind from AUTH_KINDS, or auto
    keyvault_url: str | None = None
    keyvault_secret_name: str | None = None
    managed_identity_client_id: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> CredentialSources:
        return cls(s.auth, s.keyvault_url, s.keyvault_secret_name, s.managed_identity_client_id)


@dataclass(frozen=True)
class Credentials:
    """What the client needs: a PAT, a strategy that yields Entra ID tokens, or the name of one of
    databricks-sdk's own strategies with its settings. `kind` is loggable."""

    kind: str
    token: str | None = None
    strategy: CredentialsStrategy | None = None
    sdk_auth: Mapping[str, str] = field(default_factory=dict)  # auth_type and its Config fields
    secret_values: tuple[str, ...] = ()  # what to mask in any output

    def config_kwargs(self) -> dict[str, Any]:
        if self.token is not None:
            return {"token": self.token, "auth_type": "pat"}
        if self.strategy is not None:
            return {"credentials_strategy": self.strategy}
        return dict(self.sdk_auth)

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return f"Credentials(kind={self.kind!r})"


def entra_strategy(kind: str, credential: TokenCredential) -> CredentialsStrategy:
    """Bearer tokens for the Azure Databricks scope from an azure-identity credential, which caches
    and refreshes them itself."""
    from databricks.sdk.credentials_provider import CredentialsProvider, CredentialsStrategy

    class _EntraStrategy(CredentialsStrategy):
        def auth_type(self) -> str:
            return kind

        def __call__(self, cfg: Config) -> CredentialsProvider:
            return lambda: {"Authorization": f"Bearer {credential.get_token(AZURE_DATABRICKS_SCOPE).token}"}

    return _EntraStrategy()


def resolve_credentials(
    sources: CredentialSources, env: Mapping[str, str], factories: AzureFactories | None = None
) -> Credentials:
    f = factories or real_factories()
    wanted = sources.auth
    for kind, configured, build in _sources(sources, env, f):
        if wanted == kind or (wanted == "auto" and configured):
            return build()
    if wanted != "auto":
        raise AuthError(f"--auth {wanted}: not configured")  # unreachable: every kind has a source
    raise AuthError(
        "no Databricks credential found: set DATABRICKS_TOKEN, or --keyvault-url and "
        "--keyvault-secret-name, or DEFAULT_IDENTITY_CLIENT_ID (managed identity), or "
        "ARM_CLIENT_ID/ARM_CLIENT_SECRET/ARM_TENANT_ID, or log in with `az login`"
    )


def _sources(
    s: CredentialSources, env: Mapping[str, str], f: AzureFactories
) -> list[tuple[str, bool, Callable[[], Credentials]]]:
    arm = (env.get("ARM_TENANT_ID", ""), env.get("ARM_CLIENT_ID", ""), env.get("ARM_CLIENT_SECRET", ""))
    in_azure_identity_env = bool(env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"))
    return [
        ("databricks-token", bool(env.get("DATABRICKS_TOKEN")), lambda: _databricks_token(env)),
        ("keyvault-pat", bool(s.keyvault_url and s.keyvault_secret_name), lambda: _keyvault_pat(s, f)),
        (
            "managed-identity",
            bool(s.managed_identity_client_id),
            lambda: _entra("managed-identity", f.managed_identity(s.managed_identity_client_id)),
        ),
        ("service-principal", all(arm), lambda: _service_principal(arm)),
        (
            "azure-cli",
            f.az_on_path() and not in_azure_identity_env,
            lambda: Credentials("azure-cli", sdk_auth={"auth_type": "azure-cli"}),
        ),
    ]


def _databricks_token(env: Mapping[str, str]) -> Credentials:
    token = env.get("DATABRICKS_TOKEN", "").strip()
    if not token:
        raise AuthError("--auth databricks-token: DATABRICKS_TOKEN is not set")
    return Credentials("databricks-token", token=token, secret_values=(token,))


def _keyvault_pat(s: CredentialSources, f: AzureFactories) -> Credentials:
    if not (s.keyvault_url and s.keyvault_secret_name):
        raise AuthError("--auth keyvault-pat needs --keyvault-url and --keyvault-secret-name")
    name = s.keyvault_secret_name
    try:
        client = f.secret_client(s.keyvault_url, f.default_credential())
        value = client.get_secret(name).value
    except Exception as exc:  # azure-core raises many types; the message must name the vault, not a value
        raise AuthError(
            f"could not read secret {name!r} from Key Vault {s.keyvault_url}: {_azure_reason(exc)}"
        ) from None
    if not value:
        raise AuthError(f"Key Vault secret {name!r} in {s.keyvault_url} is empty")
    token = str(value).strip()
    return Credentials("keyvault-pat", token=token, secret_values=(token,))


def _service_principal(arm: tuple[str, str, str]) -> Credentials:
    tenant, client_id, secret = arm
    if not all(arm):
        raise AuthError("--auth service-principal needs ARM_TENANT_ID, ARM_CLIENT_ID and ARM_CLIENT_SECRET")
    settings = {
        "auth_type": "azure-client-secret",
        "azure_tenant_id": tenant,
        "azure_client_id": client_id,
        "azure_client_secret": secret,
    }
    return Credentials("service-principal", sdk_auth=settings, secret_values=(secret,))


def _entra(kind: str, credential: TokenCredential) -> Credentials:
    try:
        # fail here, with a clear line, rather than inside the first API call
        token = credential.get_token(AZURE_DATABRICKS_SCOPE).token
    except Exception as exc:
        raise AuthError(f"{kind}: could not get an Entra ID token for Azure Databricks: {_azure_reason(exc)}") from None
    return Credentials(kind, strategy=entra_strategy(kind, credential), secret_values=(token,))


def _azure_reason(exc: Exception) -> str:
    """The first line of an azure-identity/azure-core error: those messages name the failing step
    and hold no secret values, but run to many lines of troubleshooting links."""
    name = type(exc).__name__
    if name == "ResourceNotFoundError":
        return "secret not found"
    return f"{name}: {first_line(exc)}"
