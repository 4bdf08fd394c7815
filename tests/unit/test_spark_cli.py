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


# -- the probe's answer, master kinds, local cores, the master's default UI ---------------------

PROBE = {
    "home": "/opt/spark",
    "submit": "/opt/spark/bin/spark-submit",
    "version": "4.3.0",
    "workdir": "/w",
    "workdir_error": "",
    "cpus": 8,
}


def test_the_probes_answer_is_its_last_line() -> None:
    probe = c.parse_probe("a banner the login shell printed\n" + json.dumps(PROBE) + "\n")
    assert probe == c.Probe("/opt/spark", "/opt/spark/bin/spark-submit", "4.3.0", "/w", "", 8)


@pytest.mark.parametrize(
    "out",
    ["", "   \n", "not json", json.dumps(PROBE) + "\ntrailing junk", "[1, 2]", '"text"', "null"],
)
def test_a_probe_answer_that_is_no_json_object_is_refused(out: str) -> None:
    with pytest.raises(c.SparkOutputError, match="the Spark probe printed no JSON"):
        c.parse_probe(out)


@pytest.mark.parametrize("key", ["home", "submit", "version", "workdir", "workdir_error"])
@pytest.mark.parametrize("value", [5, None, ["/x"], {"a": 1}, True])
def test_probe_fields_that_are_not_text_are_refused(key: str, value: object) -> None:
    with pytest.raises(c.SparkOutputError, match=f"{key} is not text"):
        c.parse_probe(json.dumps({**PROBE, key: value}))


@pytest.mark.parametrize("cpus", [0, -3, "8", 2.5, True, None, [8]])
def test_a_probe_cpu_count_that_is_not_a_positive_whole_number_is_one(cpus: object) -> None:
    assert c.parse_probe(json.dumps({**PROBE, "cpus": cpus})).cpus == 1


def test_probe_fields_are_cut_and_missing_ones_are_empty() -> None:
    probe = c.parse_probe(json.dumps({"home": "h" * 100000, "version": "9" * 1000}))
    assert len(probe.home) == 4096 and len(probe.version) == 40
    assert (probe.submit, probe.workdir, probe.workdir_error, probe.cpus) == ("", "", "", 1)


@pytest.mark.parametrize(
    ("master", "kind"),
    [
        ("spark://h:7077", "standalone"),
        ("spark://a:7077,b:7077", "standalone"),
        ("local", "local"),
        ("local[2]", "local"),
        ("local[*]", "local"),
        ("local[4,2]", "local"),
        ("local[*,3]", "local"),
        ("yarn", "yarn"),
        ("k8s://https://k:6443", "k8s"),
        ("mesos://x", ""),
        ("spark://", ""),  # no host
        ("spark://h:7077/x", ""),
        ("spark://h:port", ""),
        ("local[]", ""),
        ("local[two]", ""),
        ("local[99999]", ""),
        ("local[2] ", ""),
        (" yarn", ""),
        ("YARN", ""),
        ("", ""),
    ],
)
def test_master_kind(master: str, kind: str) -> None:
    assert c.master_kind(master) == kind


@pytest.mark.parametrize(
    ("master", "cores"),
    [("local", 1), ("local[2]", 2), ("local[4,2]", 4), ("local[*]", 8), ("local[*,3]", 8)],
)
def test_local_cores(master: str, cores: int) -> None:
    assert c.local_cores(master, 8) == cores


@pytest.mark.parametrize(
    ("master", "ui"),
    [
        ("spark://h:7077", "http://h:8080"),
        ("spark://10.0.0.5", "http://10.0.0.5:8080"),
        ("spark://a:7077,b:7077", "http://a:8080"),
        ("spark://[::1]:7077", "http://[::1]:8080"),
    ],
)
def test_the_default_ui_is_port_8080_of_the_first_masters_host(master: str, ui: str) -> None:
    assert c.default_ui(master) == ui


def test_the_probe_carries_the_masters_status_or_why_it_did_not_answer() -> None:
    status = json.dumps(STATUS)
    probe = c.parse_probe(json.dumps({**PROBE, "master": status}))
    assert c.parse_master_status(probe.master.encode()).alive[0].cores == 2
    probe = c.parse_probe(json.dumps({**PROBE, "master_error": "URLError: refused" * 100}))
    assert probe.master == "" and len(probe.master_error) == 500
    with pytest.raises(c.SparkOutputError, match="master is not text"):
        c.parse_probe(json.dumps({**PROBE, "master": {"workers": []}}))
