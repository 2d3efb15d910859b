"""The Secrets API. Values go in and never come out, except to a run in flight (dbutils.secrets)."""

from __future__ import annotations

import base64
import re
from typing import Any

from aml_databricks.workspace.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from aml_databricks.workspace.store import Store

NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
MAX_VALUE_BYTES = 128 * 1024


def _name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise InvalidParameterValue(
            f"{kind} name must be 1-128 letters, digits, dashes, underscores or periods, got {value!r}."
        )
    return value


class Secrets:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create_scope(self, scope: Any, backend_type: str | None) -> None:
        if backend_type not in (None, "DATABRICKS"):
            raise InvalidParameterValue(f"Scope backend {backend_type} is not supported locally: use DATABRICKS.")
        if not self.store.create_scope(_name("Scope", scope), "DATABRICKS"):
            raise ResourceAlreadyExists(f"Scope {scope} already exists!")

    def list_scopes(self) -> list[dict[str, str]]:
        return [{"name": r["scope"], "backend_type": r["backend_type"]} for r in self.store.scopes()]

    def delete_scope(self, scope: Any) -> None:
        if not self.store.delete_scope(_name("Scope", scope)):
            raise ResourceDoesNotExist(f"Scope {scope} does not exist!")

    def put(self, scope: Any, key: Any, string_value: Any, bytes_value: Any) -> None:
        scope, key = _name("Scope", scope), _name("Key", key)
        if (string_value is None) == (bytes_value is None):
            raise InvalidParameterValue("Set exactly one of string_value and bytes_value.")
        if string_value is not None:
            value = str(string_value).encode()
        else:
            try:
                value = base64.b64decode(bytes_value, validate=True)
            except ValueError:
                raise InvalidParameterValue("bytes_value must be base64-encoded.") from None
        if len(value) > MAX_VALUE_BYTES:
            raise InvalidParameterValue("A secret value is at most 128 KB.")
        self._require_scope(scope)
        self.store.put_secret(scope, key, value)

    def list(self, scope: Any) -> list[dict[str, Any]]:
        scope = self._require_scope(_name("Scope", scope))
        return [{"key": r["key"], "last_updated_timestamp": r["updated_at"]} for r in self.store.secret_keys(scope)]

    def delete(self, scope: Any, key: Any) -> None:
        scope = self._require_scope(_name("Scope", scope))
        if not self.store.delete_secret(scope, _name("Key", key)):
            raise ResourceDoesNotExist(f"Secret {key} does not exist in scope {scope}.")

    def value_for_run(self, scope: Any, key: Any) -> bytes:
        scope = self._require_scope(_name("Scope", scope))
        value = self.store.secret_value(scope, _name("Key", key))
        if value is None:
            raise ResourceDoesNotExist(f"Secret does not exist with scope: {scope} and key: {key}")
        return value

    def _require_scope(self, scope: str) -> str:
        if not self.store.scope_exists(scope):
            raise ResourceDoesNotExist(f"Scope {scope} does not exist!")
        return scope
