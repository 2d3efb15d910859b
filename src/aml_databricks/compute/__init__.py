"""Where tasks execute, split by the process each part runs in.

- `executor.py`: the seam the workspace's scheduler calls (`TaskSpec`, `TaskLaunch`, `TaskOutcome`).
- `protocol.py`: the driver protocol (task.json / result.json) shared by both processes.
- `host/`: the workspace process: driver processes, the fork server, the Spark cluster pool, libraries.
- `driver/`: one task run's own process: cells, dbutils, paths, its Spark session.
- `tables.py`: table helpers used on both sides.
"""
