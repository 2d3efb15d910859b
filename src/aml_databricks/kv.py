"""`KEY=VALUE` text → a (key, value) pair: the one parser behind every such flag (`run --param`,
`--spark-conf`, `--spark-env`, `--datastore`; `pipeline run --set`).

The key is stripped and must not be empty; the value is kept as given (it may hold `=` and spaces).
Raises ValueError with the reason, so each caller names its own flag in the message.
"""

from __future__ import annotations


def parse_key_value(text: str, what: str = "KEY=VALUE") -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected {what}, got {text!r}")
    return key.strip(), value
