"""The driver's pure parts: the protocol files, %sql cells, and the path mapping."""

from __future__ import annotations

from pathlib import Path

from aml_databricks.compute.driver.cells import split_sql
from aml_databricks.compute.driver.paths import PathMapper
from aml_databricks.compute.protocol import DriverResult, DriverTask, FileSystem, SparkConnection


def test_task_file_round_trips_and_keeps_the_documented_shape(tmp_path: Path) -> None:
    task = DriverTask(
        run_id=12, parent_run_id=11, task_key="main", kind="notebook", path="/Users/me/nb", source="x = 1",
        language="PYTHON", widgets={"who": "world"}, argv=[], fs=FileSystem.of_data_dir(tmp_path, {"/mnt/m": "/m"}),
        api_host="http://127.0.0.1:1", api_token="tok", cluster={"existing_cluster_id": "local"},
        spark=SparkConnection("sc://127.0.0.1:2/;session_id=s", {"spark.sql.shuffle.partitions": "4"}),
        python_path=["/lib"],
    )
    task.write(tmp_path)
    assert (tmp_path / "task.json").stat().st_mode & 0o777 == 0o600  # it holds the run token
    assert DriverTask.read(tmp_path) == task
    written = task.to_json()
    assert written["parameters"] == {"who": "world"}
    assert written["api"] == {"host": "http://127.0.0.1:1", "token": "tok"}
    assert written["fs"]["dbfs_root"] == str(tmp_path / "dbfs")
    python = DriverTask.from_json({**written, "kind": "python", "parameters": ["a", 2]})
    assert (python.argv, python.widgets, python.to_json()["parameters"]) == (["a", "2"], {}, ["a", "2"])


def test_result_file_round_trips_and_a_missing_one_means_a_crash(tmp_path: Path) -> None:
    assert DriverResult.read(tmp_path) is None
    result = DriverResult("FAILED", None, False, "ValueError: x", "Traceback ...")
    result.write(tmp_path)
    assert DriverResult.read(tmp_path) == result and not result.succeeded
    (tmp_path / "result.json").write_text("{not json")
    assert DriverResult.read(tmp_path) is None



def test_split_sql_respects_quotes_and_comments() -> None:
    source = "SELECT 'a;b' AS x; -- c;d\nSELECT \"e;f\", `g;h` /* i;j */ ;\n\n;SELECT 3"
    assert split_sql(source) == ["SELECT 'a;b' AS x", 'SELECT "e;f", `g;h`', "SELECT 3"]


def test_path_mapper_spark_paths(tmp_path: Path) -> None:
    mapper = PathMapper.from_config(
        {
            "dbfs_root": str(tmp_path / "dbfs"),
            "volumes_root": str(tmp_path / "vol"),
            "mounts": {"/mnt/m": str(tmp_path / "m")},
            "storage": {"abfss://c@a.dfs.core.windows.net": str(tmp_path / "lake")},
        }
    )
    assert mapper.spark_path("dbfs:/x/y") == "/x/y"
    assert mapper.spark_path("/mnt/m/x") == "/mnt/m/x"  # ViewFS resolves it
    assert mapper.spark_path("abfss://c@a.dfs.core.windows.net/p") == (tmp_path / "lake/p").as_uri()
    assert mapper.local("dbfs:/../../etc/passwd") == tmp_path / "dbfs/etc/passwd"  # can't climb out
    assert mapper.python_local("/dbfs/x") == str(tmp_path / "dbfs/x")
    assert mapper.python_local("/srv/data/x") == "/srv/data/x"  # not DBFS: untouched
    assert mapper.viewfs_session_confs() == {
        "fs.viewfs.mounttable.dbfs.link./Volumes": (tmp_path / "vol").as_uri(),
        "fs.viewfs.mounttable.dbfs.link./mnt/m": (tmp_path / "m").as_uri(),
    }
