"""The console script's entry: a Ctrl-C while the command is still importing ends it with one line and
130, not a KeyboardInterrupt traceback (each command takes over SIGINT once it runs)."""

import os
import signal


def _stopped_while_starting(signum: int, frame: object) -> None:
    os.write(2, b"aml-databricks: error: stopped by Ctrl-C\n")
    os._exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _stopped_while_starting)
    from aml_databricks.cli import console_main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    console_main()
