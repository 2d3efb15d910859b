"""Parsers for single input values of `aml-databricks run`; each raises ValueError with the reason
(settings.py adds the name of the flag or variable). Pure, and cheap to import (`--help` builds on it).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aml_databricks.kv import parse_key_value


@dataclass(frozen=True)
class Autoscale:
    min_workers: int
    max_workers: int


def parse_autoscale(text: str) -> Autoscale:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"expected MIN:MAX, got {text!r}")
    low, high = int(match[1]), int(match[2])
    if high < 1 or low > high:
        raise ValueError(f"need 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return Autoscale(low, high)


def parse_datastore(text: str) -> tuple[str, tuple[str, str]]:
    name, value = parse_key_value(text)
    account, sep, container = value.partition("/")
    if not sep or not account or not container or "/" in container:
        raise ValueError(f"expected DATASTORE=ACCOUNT/CONTAINER, got {text!r}")
    return name, (account, container)


def parse_secret_ref(text: str) -> tuple[str, str]:
    scope, sep, key = text.partition("/")
    if not sep or not scope or not key or "/" in key:
        raise ValueError(f"expected SCOPE/KEY, got {text!r}")
    return scope, key


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def parse_positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be > 0, got {text}")
    return value


def bounded_int(maximum: int, why: str) -> Callable[[str], int]:
    """0 ≤ value ≤ maximum (`why` names where the maximum comes from)."""

    def parse(text: str) -> int:
        value = parse_non_negative_int(text)
        if value > maximum:
            raise ValueError(f"must be <= {maximum} ({why})")
        return value

    return parse


def bounded_seconds(maximum: float) -> Callable[[str], float]:
    """A finite duration, 0 < value ≤ maximum: `inf` would mean retrying or waiting forever."""

    def parse(text: str) -> float:
        value = parse_positive_float(text)
        if not math.isfinite(value) or value > maximum:
            raise ValueError(f"must be a number of seconds <= {maximum:g}, got {text.strip()}")
        return value

    return parse


def normalize_host(text: str) -> str:
    """`adb-1.2.azuredatabricks.net` → `https://adb-1.2.azuredatabricks.net`; http only on loopback,
    because a token sent over plain http to another machine is a token given away."""
    text = text.strip()
    if not text:
        raise ValueError("is empty")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"has an invalid port: {text!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"is not an http(s) URL: {text!r}")
    if not _HOSTNAME.fullmatch(parts.hostname) and not _is_ip(parts.hostname):
        raise ValueError(f"has an invalid host name: {text!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"must be the workspace URL without a path: {text!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"uses http:// for a non-loopback host (use https://): {text!r}")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        netloc = f"[{parts.hostname}]" + ("" if port is None else f":{port}")
    return f"{parts.scheme}://{netloc}"


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
