"""`python -m aml_databricks.compute.driver RUN_DIR`: one task run's driver process (see runner.py)."""

import os
import sys

if __name__ == "__main__":
    from aml_databricks.compute.driver.runner import main

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads a notebook left running must not keep the run alive, as on Databricks.
    os._exit(code)
