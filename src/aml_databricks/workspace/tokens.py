"""Run tokens: the bearer token each task run in flight gets, and what it grants."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskContext:
    """What a run token grants: acting inside this task run."""

    parent_run_id: int
    run_id: int
    task_key: str


class RunTokens:
    def __init__(self) -> None:
        self._tokens: dict[str, TaskContext] = {}
        self._lock = threading.Lock()

    def issue(self, context: TaskContext) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = context
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def lookup(self, token: str) -> TaskContext | None:
        with self._lock:
            return self._tokens.get(token)
