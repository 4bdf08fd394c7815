"""SparkComputeProvider's pieces that need no cluster: the pyspark pin read from an
environment's requirements and compared with the cluster's version, the compute's validation,
the run's plan-time refusals, and attach and refresh against a Spark folder on disk (refresh
reads the version from Spark's files and starts no JVM; a spark-submit that fails or a master
that does not answer is an error naming it). The real cluster: tests/integration."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trainform.errors import ProviderError
from trainform.providers.base import ProviderContext, ResourceState
from trainform.providers.spark import SparkComputeProvider, pinned_pyspark, version_problem

# -- the pyspark pin ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "pinned"),
    [
        (["pyspark==4.3.0"], "4.3.0"),
        (["pyspark==4.3"], "4.3"),
        (["pyspark[sql]==4.3.0"], "4.3.0"),
        (["pyspark[sql,ml] == 3.5.1"], "3.5.1"),
        (["PySpark===3.5.1"], "3.5.1"),
        (['pyspark==3.5.1 ; python_version >= "3.8"'], "3.5.1"),
        (["numpy==2.0.0", "pyspark==3.5.1", "pyspark==4.3.0"], "3.5.1"),  # the first pin
        (["pyspark>=3"], ""),
        (["pyspark~=4.3.0"], ""),
        (["pyspark==4.*"], "4.*"),  # a wildcard: any 4 release
        (["pyspark==3.5.1.post1"], "3.5.1.post1"),
        (["pyspark==4.3.0rc1"], "4.3.0rc1"),
        (["pyspark"], ""),
        (["pyspark-stubs==3.0.0"], ""),
        (["spark==3.5.1"], ""),
        (["# pyspark==3.5.1"], ""),
        ([], ""),
    ],
)
def test_pinned_pyspark(requirements: list[str], pinned: str) -> None:
    assert pinned_pyspark(requirements) == pinned


@pytest.mark.parametrize(
    ("pinned", "cluster"),
    [
        ("4.3.0", "4.3.0"),
        ("4.3", "4.3.0"),
        ("4.3.*", "4.3.1"),
        ("4.*", "4.3.0"),
        ("4.3.0rc1", "4.3.0"),
        ("4.3.0.post1", "4.3.0"),
        ("", "4.3.0"),
        ("3.5.1", ""),
    ],
)
def test_a_pin_that_matches_or_nothing_to_compare_is_no_problem(pinned: str, cluster: str) -> None:
    assert version_problem(pinned, cluster) == ""


@pytest.mark.parametrize(
    ("pinned", "cluster"),
    [
        ("3.5.1", "4.3.0"),
        ("4.3.1", "4.3.0"),
        ("4.2", "4.3.0"),
        ("3", "4.3.0"),
        ("4", "4.3.0"),  # pip reads ==4 as 4.0.0
        ("4.3", "4.3.1"),
        ("5.*", "4.3.0"),
    ],
)
def test_a_pin_that_differs_names_both_versions(pinned: str, cluster: str) -> None:
    problem = version_problem(pinned, cluster)
    assert f"pins pyspark {pinned}," in problem and f"runs {cluster}" in problem, problem
    assert f"pyspark=={cluster}" in problem  # what to pin instead


# -- validation and plan-time refusals ---------------------------------------------------------


@pytest.fixture
def provider(tmp_path: Path) -> SparkComputeProvider:
    return SparkComputeProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))


@pytest.mark.parametrize(
    "master",
    [
        "spark://h:7077",
        "spark://a:7077,b:7077",
        "yarn",
        "k8s://https://k:6443",
        "local",
        "local[2]",
        "local[*]",
        "local[4,2]",
    ],
)
def test_masters_spark_knows_are_valid(provider: SparkComputeProvider, master: str) -> None:
    assert provider.validate("compute.s", {"master": master}) == []


@pytest.mark.parametrize(
    ("desired", "problem"),
    [
        ({"master": "mesos://x"}, "master 'mesos://x' is not spark://HOST:PORT"),
        ({"master": "local[two]"}, "master 'local[two]' is not"),
        ({"master": "YARN"}, "master 'YARN' is not"),
        ({"master": "spark:/h:7077"}, "is not spark://HOST:PORT"),
        ({"master": "local", "conf": {"foo.bar": "1"}}, "conf key 'foo.bar' is not a Spark"),
        ({"master": "local", "conf": {"spark.a b": "1"}}, "conf key 'spark.a b' is not"),
        ({"master": "local", "conf": {"spark.": "1"}}, "conf key 'spark.' is not"),
        ({"master": "local", "env": {"A-B": "1"}}, "env name 'A-B' is not a variable name"),
        ({"master": "local", "env": {"1A": "1"}}, "env name '1A' is not"),
        ({"master": "local", "env": {"A=B": "1"}}, "env name 'A=B' is not"),
        ({"master": "spark://h:7077", "master_ui": "h:8080"}, "master_ui 'h:8080' must be"),
        (
            {"master": "spark://h:7077", "master_ui": "http://h:8080/json/"},
            "master_ui 'http://h:8080/json/' must be http(s)://HOST:PORT",
        ),
        ({"master": "spark://h:7077", "master_ui": "http://h :8080"}, "master_ui"),
        ({"master": "local", "max_concurrent_runs": 0}, "max_concurrent_runs must be at least 1"),
        ({"master": "local", "port": 2222}, "port set without gateway"),
        ({"master": "local", "password": "x"}, "password set without gateway"),
        ({"master": "local", "gateway": "head"}, "gateway 'head' must be \"user@host\""),
    ],
)
def test_validate_refuses(
    provider: SparkComputeProvider, desired: dict[str, Any], problem: str
) -> None:
    problems = provider.validate("compute.s", desired)
    assert any(problem in p for p in problems), problems


def test_a_long_bad_value_is_cut_in_the_message(provider: SparkComputeProvider) -> None:
    problems = provider.validate("compute.s", {"master": "x" * 10000, "conf": {"y" * 5000: "1"}})
    assert len(problems) == 2 and all(len(p) < 300 for p in problems), problems


def test_a_good_compute_with_everything_is_valid(provider: SparkComputeProvider) -> None:
    desired = {
        "master": "spark://127.0.0.1:7077",
        "master_ui": "http://127.0.0.1:8080/",
        "conf": {"spark.executor.memory": "1g", "spark.sql.shuffle.partitions": "8"},
        "env": {"SPARK_LOCAL_IP": "127.0.0.1", "_X1": "y"},
        "max_concurrent_runs": 2,
    }
    assert provider.validate("compute.s", desired) == []


@pytest.mark.parametrize(
    ("master", "refused"),
    [
        ("spark://h:7077", True),
        ("local[2]", True),
        ("local", True),
        ("yarn", False),
        # Kubernetes runs Python drivers, but cancel could not stop the driver's pod
        ("k8s://https://k:6443", True),
    ],
)
def test_cluster_deploy_mode_on_yarn_only(
    provider: SparkComputeProvider, master: str, refused: bool
) -> None:
    problems = provider.run_problems({"master": master}, 1, {"deploy_mode": "cluster"})
    assert bool(problems) is refused, problems
    if refused:
        assert 'deploy_mode = "cluster" needs a yarn master' in problems[0], problems
        assert 'use deploy_mode = "client"' in problems[0], problems
    assert provider.run_problems({"master": master}, 1, {"deploy_mode": "client"}) == []
    assert provider.run_problems({"master": master}, 1, None) == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"deploy_mode": "driver"}, "deploy_mode must be client or cluster"),
        ({"executor_memory": "lots"}, "executor_memory 'lots' must be a size"),
        ({"driver_memory": "1 g"}, "driver_memory '1 g' must be a size"),
        ({"num_executors": 0}, "num_executors must be a whole number"),
        ({"executor_cores": 1.5}, "executor_cores must be a whole number"),
        ({"conf": {"foo": "1"}}, "conf key 'foo' is not a Spark setting"),
        ({"packages": ["numpy"]}, "package 'numpy' must be Maven coordinates"),
        ({"py_files": ["/etc/passwd"]}, "py_files entry '/etc/passwd' must be a path in"),
        ({"py_files": ["../up.zip"]}, "py_files entry '../up.zip' must be a path in"),
        ({"py_files": ["a,b.zip"]}, "must not contain a comma"),
    ],
)
def test_bad_spark_block_values_are_refused_at_plan_time(
    provider: SparkComputeProvider, options: dict[str, Any], problem: str
) -> None:
    problems = provider.run_problems({"master": "yarn"}, 1, options)
    assert len(problems) == 1 and problem in problems[0], problems


def test_good_spark_block_values_pass(provider: SparkComputeProvider) -> None:
    options = {
        "deploy_mode": "client",
        "num_executors": 2,
        "executor_cores": 1,
        "executor_memory": "512m",
        "driver_memory": "1g",
        "conf": {"spark.sql.shuffle.partitions": "4"},
        "packages": ["org.apache.spark:spark-avro_2.13:4.3.0"],
        "py_files": ["libs/dep.zip"],
    }
    assert provider.run_problems({"master": "spark://h:7077"}, 1, options) == []


@pytest.mark.parametrize(
    ("facts", "requirements", "refused"),
    [
        ({"spark_version": "4.3.0"}, ["pyspark==3.5.1"], True),
        ({"spark_version": "4.3.0"}, ["pyspark==4.3.0"], False),
        ({"spark_version": "4.3.0"}, ["pyspark>=3"], False),
        ({"spark_version": "4.3.0"}, [], False),
        (None, ["pyspark==3.5.1"], False),  # not attached yet: nothing to compare with
        ("(known after apply)", ["pyspark==3.5.1"], False),
        ({}, ["pyspark==3.5.1"], False),
    ],
)
def test_environment_problems_compare_the_pin_with_the_recorded_version(
    provider: SparkComputeProvider, facts: Any, requirements: list[str], refused: bool
) -> None:
    problems = provider.environment_problems({"master": "local", "facts": facts}, requirements)
    assert bool(problems) is refused, problems
    if refused:
        assert "3.5.1" in problems[0] and "4.3.0" in problems[0], problems


# -- attach and refresh against a Spark folder on disk -----------------------------------------

BANNER = "Welcome to\n   ____\n  /_/   version 4.3.0\nUsing Scala version 2.13.18\n"


def fake_spark(folder: Path, release: str | None = "Spark 4.3.0 built for Hadoop 3.4.1\n") -> Path:
    """A Spark folder whose bin/spark-submit is a stand-in (a JVM start takes seconds and
    proves nothing here): it prints Spark's banner on stderr, and appends its arguments to
    the file $CALLS, so a test sees whether it ran. ``release``: the RELEASE file."""
    (folder / "bin").mkdir(parents=True)
    submit = folder / "bin" / "spark-submit"
    submit.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$CALLS"\n'
        'if [ -n "$FAIL" ]; then echo "$FAIL" >&2; exit 1; fi\n'
        f"printf '%s' '{BANNER}' >&2\n"
    )
    submit.chmod(submit.stat().st_mode | stat.S_IXUSR)
    if release is not None:
        (folder / "RELEASE").write_text(release)
    return folder


def recorded(attrs: dict[str, Any], computed: dict[str, Any]) -> ResourceState:
    return ResourceState("compute.s", "compute", "s", None, "spark", attrs, computed)


def calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_attach_runs_spark_submit_and_refresh_reads_the_files_only(
    provider: SparkComputeProvider, tmp_path: Path
) -> None:
    home = fake_spark(tmp_path / "spark")
    log = tmp_path / "calls"
    attrs = {"master": "local[3]", "spark_home": str(home), "env": {"CALLS": str(log)}}
    observed = provider.create("compute.s", attrs)
    assert observed["facts"] == {
        "spark_version": "4.3.0",
        "spark_home": str(home),
        "spark_submit": str(home / "bin" / "spark-submit"),
        "master_kind": "local",
        "cores": 3,
    }
    assert observed["workdir_path"] == str(tmp_path / ".trainform" / "spark")
    assert Path(observed["workdir_path"]).is_dir()
    assert calls(log) == ["--version"]

    again = provider.read(recorded(attrs, observed))
    assert again is not None and again["facts"] == observed["facts"]
    assert calls(log) == ["--version"]  # refresh started no JVM


def test_the_version_comes_from_the_jars_without_a_release_file(
    provider: SparkComputeProvider, tmp_path: Path
) -> None:
    home = fake_spark(tmp_path / "spark", release=None)
    (home / "jars").mkdir()
    (home / "jars" / "spark-core_2.13-4.1.2.jar").write_bytes(b"")
    log = tmp_path / "calls"
    attrs = {"master": "local", "spark_home": str(home), "env": {"CALLS": str(log)}}
    observed = provider.read(recorded(attrs, {}))
    assert observed is not None and observed["facts"]["spark_version"] == "4.1.2"
    assert observed["facts"]["cores"] == 1  # "local": one thread
    assert calls(log) == []


def test_without_a_version_in_the_files_refresh_asks_spark_submit(
    provider: SparkComputeProvider, tmp_path: Path
) -> None:
    home = fake_spark(tmp_path / "spark", release="not Spark\n")
    log = tmp_path / "calls"
    attrs = {"master": "local[*]", "spark_home": str(home), "env": {"CALLS": str(log)}}
    observed = provider.read(recorded(attrs, {}))
    assert observed is not None and observed["facts"]["spark_version"] == "4.3.0"
    assert observed["facts"]["cores"] == (os.cpu_count() or 1)
    assert calls(log) == ["--version"]


def test_a_spark_submit_that_fails_fails_attach_with_its_message(
    provider: SparkComputeProvider, tmp_path: Path
) -> None:
    home = fake_spark(tmp_path / "spark")
    env = {"CALLS": str(tmp_path / "calls"), "FAIL": "JAVA_HOME is not set"}
    with pytest.raises(ProviderError) as caught:
        provider.create("compute.s", {"master": "local", "spark_home": str(home), "env": env})
    message = str(caught.value)
    assert "spark-submit --version exited with 1 on this machine" in message, message
    assert "JAVA_HOME is not set" in message, message


@pytest.mark.parametrize("kind", ["empty", "missing", "not executable"])
def test_a_spark_home_without_spark_submit_is_named(
    provider: SparkComputeProvider, tmp_path: Path, kind: str
) -> None:
    home = tmp_path / "spark"
    if kind == "empty":
        home.mkdir()
    elif kind == "not executable":
        fake_spark(home)
        (home / "bin" / "spark-submit").chmod(0o644)
    with pytest.raises(ProviderError) as caught:
        provider.create("compute.s", {"master": "local", "spark_home": str(home)})
    assert f"no spark-submit on this machine in {home}/bin" in str(caught.value)


def test_a_workdir_that_cannot_be_made_is_named(
    provider: SparkComputeProvider, tmp_path: Path
) -> None:
    home = fake_spark(tmp_path / "spark")
    (tmp_path / "file").write_text("in the way")
    attrs = {"master": "local", "spark_home": str(home), "workdir": str(tmp_path / "file" / "w")}
    with pytest.raises(ProviderError) as caught:
        provider.read(recorded(attrs, {}))
    assert f"cannot create workdir {tmp_path / 'file' / 'w'}" in str(caught.value)


# A standalone master's /json/ as Spark 4.3 answers it (two workers, one of them dead).
MASTER_JSON = {
    "url": "spark://127.0.0.1:7077",
    "workers": [
        {"id": "worker-1", "host": "127.0.0.1", "cores": 2, "coresused": 1, "memory": 2048,
         "memoryused": 1024, "state": "ALIVE"},
        {"id": "worker-2", "host": "127.0.0.2", "cores": 4, "coresused": 0, "memory": 4096,
         "memoryused": 0, "state": "DEAD"},
    ],
    "aliveworkers": 1,
    "activeapps": [{"id": "app-1-0001", "name": "trainform-r1", "cores": 1, "state": "RUNNING"}],
    "completedapps": [],
    "status": "ALIVE",
}  # fmt: skip


@pytest.fixture
def master_ui() -> Iterator[dict[str, Any]]:
    """A stand-in for a standalone master's web UI on 127.0.0.1 that answers /json/ with
    ``state["body"]`` (the real master is tests/spark.py's, in the integration tests)."""
    state: dict[str, Any] = {"body": json.dumps(MASTER_JSON).encode(), "asked": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["asked"].append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["ui"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_a_standalone_masters_alive_workers_cores_and_memory(
    provider: SparkComputeProvider, tmp_path: Path, master_ui: dict[str, Any]
) -> None:
    home = fake_spark(tmp_path / "spark")
    attrs = {
        "master": "spark://127.0.0.1:7077",
        "master_ui": master_ui["ui"] + "/",
        "spark_home": str(home),
        "env": {"CALLS": str(tmp_path / "calls")},
    }
    facts = provider.create("compute.s", attrs)["facts"]
    assert {k: facts[k] for k in ("master_status", "workers", "alive_workers")} == {
        "master_status": "ALIVE",
        "workers": 2,
        "alive_workers": 1,
    }
    assert (facts["cores"], facts["memory_mb"]) == (2, 2048)  # the alive worker's only
    assert master_ui["asked"] == ["/json/"]

    shown = provider.describe(recorded(attrs, {"facts": facts}))
    assert [(w["id"], w["state"], w["cores"]) for w in shown["workers"]] == [
        ("worker-1", "ALIVE", "1/2"),
        ("worker-2", "DEAD", "0/4"),
    ]
    assert shown["applications"] == [
        {"id": "app-1-0001", "name": "trainform-r1", "state": "RUNNING", "cores": 1}
    ]

    master_ui["body"] = b"<html>not the master</html>"
    with pytest.raises(ProviderError, match="not JSON"):
        provider.read(recorded(attrs, {"facts": facts}))


def test_a_master_that_does_not_answer_names_its_ui(
    provider: SparkComputeProvider, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        ui = f"http://127.0.0.1:{s.getsockname()[1]}"
    home = fake_spark(tmp_path / "spark")
    attrs = {"master": "spark://127.0.0.1:7077", "master_ui": ui, "spark_home": str(home)}
    with pytest.raises(ProviderError) as caught:
        provider.read(recorded(attrs, {}))
    message = str(caught.value)
    assert "the Spark master spark://127.0.0.1:7077 did not answer" in message, message
    assert f"its status at {ui}/json/, asked from this machine" in message, message
    assert "Connection refused" in message, message


# -- the snapshot's Python files for --py-files (made by the launcher on the target) ----------


def test_zip_python_files_takes_the_py_files_only_not_the_outputs_nor_links(
    tmp_path: Path,
) -> None:
    import zipfile

    from trainform.runs.launcher import zip_python_files

    src = tmp_path / "src"
    for path, text in {
        "main.py": "import helper\n",
        "helper.py": "X = 1\n",
        "pkg/__init__.py": "",
        "pkg/deep/mod.py": "Y = 2\n",
        "data.csv": "a,b\n",
        "notes.pyc": "",
        "script.py.bak": "",
        "outputs/model.py": "written by an earlier attempt\n",
        "outputs2/kept.py": "",  # only the outputs folder itself is skipped
    }.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("TOKEN = 'x'\n")
    (src / "linked.py").symlink_to(outside / "secret.py")
    (src / "linked_dir").symlink_to(outside)
    dest = tmp_path / "run" / "snapshot-py.zip"
    dest.parent.mkdir()

    count = zip_python_files(src, dest, skip="outputs")

    with zipfile.ZipFile(dest) as archive:
        names = sorted(archive.namelist())
        assert archive.read("pkg/deep/mod.py") == b"Y = 2\n"
    assert names == [
        "helper.py",
        "main.py",
        "outputs2/kept.py",
        "pkg/__init__.py",
        "pkg/deep/mod.py",
    ]
    assert count == len(names)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["snapshot-py.zip"]  # no partial


def test_zip_python_files_skips_a_nested_outputs_folder_and_replaces_the_zip(
    tmp_path: Path,
) -> None:
    import zipfile

    from trainform.runs.launcher import zip_python_files

    src = tmp_path / "src"
    (src / "out" / "run").mkdir(parents=True)
    (src / "out" / "run" / "x.py").write_text("")
    (src / "out" / "y.py").write_text("")
    dest = tmp_path / "s.zip"
    dest.write_bytes(b"an old zip")
    assert zip_python_files(src, dest, skip="out/run") == 1
    with zipfile.ZipFile(dest) as archive:
        assert archive.namelist() == ["out/y.py"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert zip_python_files(empty, dest, skip="outputs") == 0
    with zipfile.ZipFile(dest) as archive:
        assert archive.namelist() == []


# -- what a run's folder says about its application -------------------------------------------


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ({"app_id": "app-20261203164025-0000", "ui": "http://h:4040"}, None),
        ({"app_id": "local-1764771234567"}, None),
        (
            {"app_id": "application_1700000000000_0001", "extra": "x" * 10},
            {"app_id": "application_1700000000000_0001"},
        ),
        ({"app_id": "app-1; rm -rf /", "ui": "javascript:alert(1)"}, "absent"),
        ({"app_id": ["app-1-2"], "ui": "http://h:4040/" + "a" * 10}, "absent"),
        ("app-1-2", "absent"),
    ],
)
def test_the_application_a_run_folder_names_is_kept_only_as_its_patterns_allow(
    provider: SparkComputeProvider, tmp_path: Path, written: Any, kept: Any
) -> None:
    """``status.json`` is in the run's folder, which the run can write: its ``spark`` is
    hostile, and reaches state, ``runs show`` and cancel only as the patterns allow."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "status.json").write_text(
        json.dumps({"status": "completed", "exit_code": 0, "spark": written})
    )
    status = provider.status({"run_dir": str(run_dir), "launcher_pid": 0, "spark": {}})
    if kept == "absent":
        assert "spark" not in status, status
    else:
        assert status["spark"] == (written if kept is None else kept), status
