"""The Jobs API's terminal life-cycle states, said once for the three processes that wait on runs: the
step (step/wait.py), the workspace (workspace/lifecycle.py) and a notebook's `dbutils.notebook.run`.
Names only, so the driver process does not pay for importing databricks-sdk's service modules."""

TERMINAL_LIFE_CYCLE_STATES: frozenset[str] = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
