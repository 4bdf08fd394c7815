"""spark_cli: spark-submit's argument vector (values Spark would misread refused), the version
banner, and a standalone master's JSON status read as hostile input."""

from __future__ import annotations

import json

import pytest

from trainform.errors import ProviderError
from trainform.providers import spark_cli as c

BANNER = """\
Welcome to
      ____              __
     / __/__  ___ _____/ /__
    _\\ \\/ _ \\/ _ `/ __/  '_/
   /___/ .__/\\_,_/_/ /_/\\_\\   version 4.3.0
      /_/

Using Scala version 2.13.18, OpenJDK 64-Bit Server VM, 17.0.15
"""

STATUS = {
    "url": "spark://127.0.0.1:17077",
    "workers": [
        {
            "id": "worker-20261203143054-127.0.0.1-35187",
            "host": "127.0.0.1",
            "port": 35187,
            "cores": 2,
            "coresused": 1,
            "memory": 2048,
            "memoryused": 1024,
            "state": "ALIVE",
        },
        {"id": "worker-2", "host": "10.0.0.2", "cores": 4, "state": "DEAD"},
    ],
    "aliveworkers": 1,
    "activeapps": [{"id": "app-1", "name": "trainform-r1", "cores": 1, "state": "RUNNING"}],
    "completedapps": [{"id": "app-0", "name": "wc", "cores": 1, "state": "FINISHED"}],
    "status": "ALIVE",
}


def test_submit_argv_passes_arguments_as_written_and_sorts_conf() -> None:
    options = c.SubmitOptions(
        master="spark://h:7077",
        name="trainform-r1",
        num_executors=2,
        executor_memory="2g",
        conf={"spark.b": "2", "spark.a": "1 2"},
        packages=("org.x:y:1.0",),
        py_files=("/w/src.zip",),
    )
    argv = c.submit_argv("/opt/spark/bin/spark-submit", options, "/w/main.py", ["--lr", "0.1; rm"])
    assert argv == [
        "/opt/spark/bin/spark-submit",
        "--master",
        "spark://h:7077",
        "--deploy-mode",
        "client",
        "--name",
        "trainform-r1",
        "--num-executors",
        "2",
        "--executor-memory",
        "2g",
        "--conf",
        "spark.a=1 2",
        "--conf",
        "spark.b=2",
        "--packages",
        "org.x:y:1.0",
        "--py-files",
        "/w/src.zip",
        "/w/main.py",
        "--lr",
        "0.1; rm",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deploy_mode": "yarn"}, "deploy_mode"),
        ({"executor_memory": "2 GB"}, "executor_memory"),
        ({"num_executors": 0}, "num_executors"),
        ({"conf": {"hadoop.x": "1"}}, "not a Spark setting"),
        ({"packages": ("x",)}, "Maven coordinates"),
        ({"py_files": ("a,b.zip",)}, "comma"),
    ],
)
def test_submit_argv_refuses_what_spark_would_misread(options: dict, message: str) -> None:
    with pytest.raises(ProviderError, match=message):
        c.submit_argv("s", c.SubmitOptions(master="local[2]", name="n", **options), "m.py")


def test_the_version_comes_from_the_banner() -> None:
    assert c.parse_version(BANNER) == (4, 3, 0)
    with pytest.raises(c.SparkOutputError):
        c.parse_version("command not found")


def test_the_master_status_is_read_with_types_checked() -> None:
    status = c.parse_master_status(json.dumps(STATUS).encode())
    assert [w.id for w in status.alive] == ["worker-20261203143054-127.0.0.1-35187"]
    assert status.workers[0].memory_mb == 2048 and status.workers[0].cores_used == 1
    assert [a.name for a in status.active] == ["trainform-r1"]
    assert status.completed[0].state == "FINISHED"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>",
        b"[]",
        json.dumps({"workers": "x"}).encode(),
        json.dumps({"workers": [{"cores": -1}]}).encode(),
        json.dumps({"activeapps": [{"id": 5}]}).encode(),
        b" " * (c.MAX_STATUS + 1),
    ],
)
def test_a_hostile_master_status_is_refused(body: bytes) -> None:
    with pytest.raises(c.SparkOutputError):
        c.parse_master_status(body)
