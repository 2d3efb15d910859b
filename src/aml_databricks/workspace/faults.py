"""Fault injection for people testing their own clients: 429s, 503s, dropped connections, delay.

A fault is decided before the request reaches its handler, so a faulted submit is never applied;
a client that retries it gets exactly one run.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aml_databricks.errors import UsageError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KINDS = ("429", "503", "reset")
LATENCY = re.compile(r"^(\d+)(?:-(\d+))?ms$")


@dataclass(frozen=True)
class FaultPlan:
    rates: dict[str, float]
    latency_ms: tuple[int, int] = (0, 0)

    @property
    def active(self) -> bool:
        return any(self.rates.values()) or self.latency_ms[1] > 0

    def describe(self) -> str:
        parts = [f"{kind}={rate:g}" for kind, rate in self.rates.items() if rate]
        if self.latency_ms[1]:
            parts.append(f"latency={self.latency_ms[0]}-{self.latency_ms[1]}ms")
        return ",".join(parts) or "none"


NO_FAULTS = FaultPlan({})


def parse_faults(text: str | None) -> FaultPlan:
    """`"429=0.2,503=0.1,reset=0.05,latency=0-200ms"` → a FaultPlan; raises UsageError on anything else."""
    if not text or text.strip() in ("", "none"):
        return NO_FAULTS
    rates: dict[str, float] = {}
    latency = (0, 0)
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise UsageError(f"fault {item!r} is not NAME=VALUE (e.g. 429=0.2,503=0.1,reset=0.05,latency=0-200ms)")
        if name == "latency":
            match = LATENCY.match(value)
            if not match:
                raise UsageError(f"latency {value!r} is not like 0-200ms")
            low = int(match.group(1))
            latency = (low, int(match.group(2) or low))
            continue
        if name not in KINDS:
            raise UsageError(f"unknown fault {name!r}: use 429, 503, reset or latency")
        try:
            rate = float(value)
        except ValueError:
            raise UsageError(f"fault rate {value!r} is not a number") from None
        if not 0 <= rate <= 1:
            raise UsageError(f"fault rate {value!r} must be between 0 and 1")
        rates[name] = rate
    if sum(rates.values()) > 1:
        raise UsageError("fault rates add up to more than 1")
    return FaultPlan(rates, latency)


class FaultInjector:
    """Pure ASGI middleware, outermost, so that it can drop the raw connection."""

    def __init__(self, app: ASGIApp, plan: FaultPlan = NO_FAULTS, seed: int | None = None,
                 exempt: Callable[[Scope], bool] = lambda scope: False) -> None:
        self.app = app
        self.exempt = exempt
        self._lock = threading.Lock()
        self.configure(plan, seed)

    def configure(self, plan: FaultPlan, seed: int | None = None) -> None:
        with self._lock:
            self.plan = plan
            self._random = random.Random(seed)

    def _draw(self) -> tuple[str | None, float]:
        with self._lock:
            plan = self.plan
            roll = self._random.random()
            delay = self._random.uniform(*plan.latency_ms) / 1000 if plan.latency_ms[1] else 0.0
        for kind in KINDS:
            rate = plan.rates.get(kind, 0.0)
            if roll < rate:
                return kind, delay
            roll -= rate
        return None, delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not self.plan.active or not scope["path"].startswith("/api/")
                or self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        fault, delay = self._draw()
        if delay:
            await asyncio.sleep(delay)
        if fault == "reset" and _abort_connection(send):
            return
        if fault in ("429", "503", "reset"):  # reset without a transport to abort degrades to a 503
            await _error(send, 429 if fault == "429" else 503)
            return
        await self.app(scope, receive, send)


def _abort_connection(send: Send) -> bool:
    # uvicorn's `send` is a bound method of the request cycle that owns the connection's transport.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


async def _error(send: Send, status: int) -> None:
    if status == 429:
        body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Injected fault: too many requests."}
        headers = [(b"retry-after", b"1")]
    else:
        body = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "Injected fault: service unavailable."}
        headers = []
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})
