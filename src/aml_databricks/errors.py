"""The library's errors. The CLI prints `str(error)` on one line and exits with `exit_code`.

    AmlDatabricksError                exit 2 unless said otherwise
    ├── UsageError                    bad input or configuration (2)
    ├── MissingExtraError             an optional part is not installed (2)
    ├── AuthError                     no credential, or the workspace refused it (3)
    ├── RunFailedError                the Databricks run did not succeed (1)
    └── StoppedError                  stopped by a signal, run cancelled (130 / 143)
"""

from __future__ import annotations


class AmlDatabricksError(Exception):
    exit_code = 2


class UsageError(AmlDatabricksError):
    exit_code = 2


class MissingExtraError(AmlDatabricksError):
    exit_code = 2

    def __init__(self, extra: str, what: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'aml-databricks[{extra}]'")


class AuthError(AmlDatabricksError):
    exit_code = 3


class RunFailedError(AmlDatabricksError):
    exit_code = 1


class StoppedError(AmlDatabricksError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of an error message (many run to tracebacks or troubleshooting
    links), or the exception's type name when it has no message: a user sees one line."""
    text = (error if isinstance(error, str) else str(error)).strip()
    if text:
        return text.splitlines()[0].strip()
    return "" if isinstance(error, str) else type(error).__name__
