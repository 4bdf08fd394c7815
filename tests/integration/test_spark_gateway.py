"""`compute { type = "spark"; gateway = "tfuser@127.0.0.1:PORT" }` through the real CLI:
spark-submit and the driver's launcher run on a gateway (HDInsight's head node) reached over
SSH on a real OpenSSH server on loopback (tests/integration/conftest.py), as the unprivileged
tfuser; the cluster is the session's real Spark standalone cluster (tests/spark.py), whose
master and worker run as root on this machine.

The gateway user needs a Python with pyspark and Spark's bin/spark-submit. `.venv-spark` is
made by root (scripts/install-test-deps) with an interpreter that may live under /root (mode
700 here: `.venv-spark/bin/python` -> /root/.pyenv/...), and the checkout itself may be
under a folder tfuser cannot enter (CI's path differs, so it is taken from tests/spark.py).
So `any_user_pyspark` makes, once per session, a virtualenv of the system python3 in a
folder every user can read, holding `.venv-spark`'s pyspark and py4j packages (hard links
where the files are world-readable, copies otherwise; no permission of the checkout
changes). Its interpreter is the environment's python (the driver's and, through
PYSPARK_PYTHON, the executors'), its pyspark folder the compute's spark_home.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import spark
from helpers import CLI, base_env, failed, ok, recorded, wait_until

if TYPE_CHECKING:
    from spark import SparkCluster

    from tests.integration.conftest import SSHServer, TestUser, UserKey

SYSTEM_PYTHON = "/usr/bin/python3"
IDLE_TIMEOUT = 600.0  # seconds: other tests' applications may hold the cluster's cores
RUN_TIMEOUT = 600.0  # seconds an apply may take (JVMs start slowly on a busy machine)

TRAIN = """\
import getpass, json, os, time
from pyspark.sql import SparkSession
from trainform.tracking import log_metric

import helper

spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
print("application", sc.applicationId, flush=True)
if os.environ.get("HOLD"):
    print("holding", flush=True)
    sc.parallelize(range(2), 2).foreach(lambda _: time.sleep(300))
# helper travels to the executors in the snapshot's zip (--py-files).
total = sc.parallelize(range(10), 2).map(helper.scaled).sum()
print(f"total {total} with helper {helper.VALUE}", flush=True)
log_metric("total", float(total))
for step in range(3):
    log_metric("loss", 1.0 / (step + 1), step=step)
out = os.environ["TRAINFORM_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "who.json"), "w") as fh:
    json.dump({"user": getpass.getuser(), "app": sc.applicationId}, fh)
spark.stop()
print("training done", flush=True)
"""
HELPER = "VALUE = {value}\n\n\ndef scaled(n):\n    return n * VALUE\n"


@dataclass(frozen=True)
class AnyUserPyspark:
    python: Path  # a virtualenv's interpreter with pyspark
    spark_home: Path  # its pyspark folder (bin/spark-submit, jars)


def _link_or_copy(source: str, dest: str) -> None:
    """A hard link of a world-readable file (no bytes copied, no mode changed), else a copy
    made readable (and executable where its owner may run it) by everyone."""
    mode = os.stat(source).st_mode
    if mode & stat.S_IROTH:
        with contextlib.suppress(OSError):
            os.link(source, dest)
            return
    shutil.copy2(source, dest)
    extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if mode & stat.S_IXUSR:
        extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    os.chmod(dest, (mode & 0o7777) | extra)


@pytest.fixture(scope="session")
def any_user_pyspark(spark_cluster: SparkCluster) -> Iterator[AnyUserPyspark]:
    """See the module: the system python3's virtualenv with `.venv-spark`'s pyspark and py4j,
    in a temporary folder (mode 755) removed after the session."""
    home = spark.spark_home()
    assert home is not None, spark.missing()
    source = home.parent  # .venv-spark's site-packages
    folder = Path(tempfile.mkdtemp(prefix="trainform-spark-any-user-"))
    folder.chmod(0o755)
    try:
        venv = folder / "venv"
        subprocess.run(
            [SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)],
            check=True,
            capture_output=True,
        )
        found = sorted(venv.glob("lib/python3*/site-packages"))
        assert len(found) == 1, found
        for name in ("pyspark", "py4j"):
            shutil.copytree(
                source / name, found[0] / name, symlinks=True, copy_function=_link_or_copy
            )
        for path in [folder, *venv.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o555)
        yield AnyUserPyspark(venv / "bin" / "python", found[0] / "pyspark")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _active(cluster: SparkCluster) -> list[dict[str, Any]]:
    return list(cluster.status()["activeapps"])


@pytest.fixture
def cluster(spark_cluster: SparkCluster, tfuser: TestUser) -> Iterator[SparkCluster]:
    """The session's cluster once no application is active (other tests' runs share its two
    cores); tfuser's applications still active after the test are killed."""
    wait_until(
        "the Spark master with no active application",
        lambda: not _active(spark_cluster),
        timeout=IDLE_TIMEOUT,
    )
    yield spark_cluster
    for app in _active(spark_cluster):
        if app.get("user") == tfuser.name:
            spark_cluster.kill(str(app["id"]))


def gateway_cli(
    tmp_path: Path,
    sshd: SSHServer,
    cluster: SparkCluster,
    pyspark: AnyUserPyspark,
    with_run: bool = True,
    **options: Any,
) -> CLI:
    """A configuration with a spark compute whose gateway is tfuser on `sshd`, and (with
    `with_run`) one run of `src/train.py`; `options` are more attributes of the compute
    (strings starting with `var.` stay references)."""
    folder = tmp_path / "config"
    folder.mkdir()
    cli = CLI(folder, base_env())
    attributes = {
        "type": "spark",
        "master": cluster.master,
        "master_ui": cluster.ui,
        "spark_home": str(pyspark.spark_home),
        "gateway": f"tfuser@{sshd.endpoint}",
        **options,
    }
    lines = [
        f"  {k} = {v if isinstance(v, str) and v.startswith('var.') else json.dumps(v)}"
        for k, v in attributes.items()
    ]
    hcl = (
        'compute "spark" {\n' + "\n".join(lines) + '\n  env  = { SPARK_LOCAL_IP = "127.0.0.1" }\n'
        '  conf = { "spark.ui.showConsoleProgress" = "false" }\n}\n'
    )
    if with_run:
        hcl += (
            f'environment "py" {{\n  python = "{pyspark.python}"\n  user_managed = true\n}}\n'
            'run "train" {\n'
            '  experiment  = "spark-gateway"\n'
            "  compute     = compute.spark\n"
            "  environment = environment.py\n"
            '  source_dir  = "src"\n'
            '  script      = "train.py"\n'
            "}\n"
        )
        cli.write("src/train.py", TRAIN)
        cli.write("src/helper.py", HELPER.format(value=1))
    cli.write("main.train.hcl", hcl)
    return cli


def run_show(cli: CLI, **env: str) -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", "run.train", "--json", **env)).out))


def handle(cli: CLI) -> dict[str, Any]:
    """The latest run's handle as the state records it."""
    return dict(recorded(cli.cwd)["run.train"].computed["handle"])


def compute_values(cli: CLI, **env: str) -> dict[str, Any]:
    shown = json.loads(ok(cli("show", "--json", **env)).out)["values"]["root_module"]["resources"]
    return dict(next(r for r in shown if r["address"] == "compute.spark")["values"])


def apply(cli: CLI, *args: str, **env: str) -> Any:
    return ok(cli("apply", "-auto-approve", *args, timeout=RUN_TIMEOUT, **env))


def app_record(cluster: SparkCluster, app_id: str) -> dict[str, Any] | None:
    status = cluster.status()
    found = [a for a in (*status["activeapps"], *status["completedapps"]) if a["id"] == app_id]
    return found[0] if found else None


def test_a_run_through_the_gateway_completes_as_the_gateway_user_and_a_rerun_sends_the_change(
    tmp_path: Path,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    cluster: SparkCluster,
    any_user_pyspark: AnyUserPyspark,
) -> None:
    workdir = f"{remote_tmp}/spark"
    cli = gateway_cli(
        tmp_path,
        sshd,
        cluster,
        any_user_pyspark,
        private_key_file=str(user_key.private_path),
        host_key=sshd.fingerprint,
        workdir=workdir,
    )
    cli.write("src/data.txt", "0123456789abcdef\n" * 4096)  # 68 KiB that never change
    since = sshd.log_size()
    first_apply = apply(cli)
    assert "Accepted publickey for tfuser" in sshd.log(since)
    # The driver's log was followed over SSH while it ran (apply prints it as it comes).
    out = first_apply.out
    assert "total 45 with helper 1" in out and "training done" in out, out
    assert "run.train: Completed" in out, out
    values = compute_values(cli)
    assert values["host_keys"] == {sshd.endpoint: sshd.fingerprint}, values
    assert values["workdir_path"] == workdir, values
    # The facts were probed on the gateway: its Spark, and the master's worker seen from there.
    facts = values["facts"]
    assert facts["spark_home"] == str(any_user_pyspark.spark_home), facts
    assert facts["alive_workers"] == 1 and facts["cores"] == 2, facts

    shown = run_show(cli)
    assert shown["status"] == "completed" and shown["exit_code"] == 0, shown
    assert shown["metrics"]["loss"]["count"] == 3, shown
    assert shown["metrics"]["total"]["last"] == 45, shown
    assert shown["upload"]["files"] == 3 and shown["upload"]["bytes"] > 68 << 10, shown
    dest = tmp_path / "fetched"
    ok(cli("runs", "outputs", "run.train", "--to", str(dest)))
    who = json.loads((dest / "who.json").read_text())
    assert who["user"] == "tfuser" and who["app"].startswith("app-"), who
    assert f"spark app    {who['app']}" in ok(cli("runs", "show", "run.train")).out
    assert shown["spark"]["app_id"] == who["app"], shown
    # The master ran the application for the gateway's user, and it finished.
    app = app_record(cluster, who["app"])
    assert app is not None and app["user"] == "tfuser" and app["state"] == "FINISHED", app

    # The run's folder is on the gateway, in the workdir, owned by the gateway's user.
    first = handle(cli)
    run_dir = Path(first["nodes"][0]["run_dir"])
    assert run_dir.parent == Path(workdir) / "runs", first
    assert run_dir.stat().st_uid == tfuser.uid
    assert (run_dir / "snapshot-py.zip").is_file()
    assert "password" not in first["target"] and first["spark"]["gateway"] == (
        f"tfuser@{sshd.endpoint}"
    ), first

    # One file changed: only its blob travels.
    cli.write("src/helper.py", HELPER.format(value=2))
    second_apply = apply(cli)
    assert "total 90 with helper 2" in second_apply.out, second_apply.out
    second = run_show(cli)
    assert second["status"] == "completed", second
    assert second["upload"]["files"] == 1, second
    assert second["upload"]["bytes"] < 20 << 10, second  # not the unchanged 68 KiB
    assert second["spark"]["app_id"] != who["app"], second
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_an_unknown_gateway_key_is_refused_then_trusted_once_then_a_changed_key_is_refused(
    tmp_path: Path,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    cluster: SparkCluster,
    any_user_pyspark: AnyUserPyspark,
) -> None:
    known_hosts = tmp_path / "known_hosts"  # empty: the gateway is unknown
    known_hosts.write_text("")
    workdir = f"{remote_tmp}/spark"
    cli = gateway_cli(
        tmp_path,
        sshd,
        cluster,
        any_user_pyspark,
        with_run=False,
        private_key_file=str(user_key.private_path),
        known_hosts=str(known_hosts),
        workdir=workdir,
    )
    since = sshd.log_size()
    refused = failed(cli("apply", "-auto-approve"), sshd.fingerprint, "trust_on_first_use")
    assert "compute.spark" in refused.all, refused.all
    log = sshd.wait_for_log("do_cleanup", since=since)
    assert "userauth-request" not in log and "Accepted" not in log, log
    assert not Path(workdir).exists()
    # Nothing pinned (a failed attach may be recorded, tainted, with no computed values).
    tainted = recorded(cli.cwd).get("compute.spark")
    assert tainted is None or not tainted.computed.get("host_keys"), tainted

    # Trust on first use: the key seen is pinned in state, known_hosts left alone.
    hcl = (cli.cwd / "main.train.hcl").read_text()
    cli.write("main.train.hcl", hcl.replace("  env  =", "  trust_on_first_use = true\n  env  ="))
    apply(cli)
    assert recorded(cli.cwd)["compute.spark"].computed["host_keys"] == {
        sshd.endpoint: sshd.fingerprint
    }
    assert compute_values(cli)["host_keys"] == {sshd.endpoint: sshd.fingerprint}
    assert known_hosts.read_text() == ""
    assert Path(workdir).is_dir()
    ok(cli("plan", "-detailed-exitcode"), 0)

    # Another key now: refused at refresh and apply, credentials never sent, pin kept.
    old = sshd.fingerprint
    sshd.restart(new_host_key=True)
    since = sshd.log_size()
    plan = failed(cli("plan"), "man-in-the-middle", old, sshd.fingerprint)
    assert "compute.spark" in plan.all, plan.all
    failed(cli("apply", "-auto-approve"), "man-in-the-middle")
    assert "userauth-request" not in sshd.log(since)
    assert recorded(cli.cwd)["compute.spark"].computed["host_keys"] == {sshd.endpoint: old}


def test_cancel_through_the_gateway_kills_the_application(
    tmp_path: Path,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    cluster: SparkCluster,
    any_user_pyspark: AnyUserPyspark,
) -> None:
    cli = gateway_cli(
        tmp_path,
        sshd,
        cluster,
        any_user_pyspark,
        private_key_file=str(user_key.private_path),
        host_key=sshd.fingerprint,
        workdir=f"{remote_tmp}/spark",
    )
    hcl = (cli.cwd / "main.train.hcl").read_text()
    cli.write("main.train.hcl", hcl.replace('  script      = "train.py"\n', HOLD_LINES))
    apply(cli, "--detach")
    wait_until(
        "the driver holding",
        lambda: "holding" in ok(cli("runs", "logs", "run.train")).out,
        timeout=RUN_TIMEOUT,
    )
    app_id = ok(cli("runs", "logs", "run.train")).out.split("application ", 1)[1].split()[0]
    # The executors sleep: the application holds the worker's cores.
    wait_until(
        "the application's executors holding cores",
        lambda: (a := app_record(cluster, app_id)) is not None and a["cores"] > 0,
        timeout=RUN_TIMEOUT,
    )
    assert run_show(cli)["status"] == "running"
    assert run_show(cli)["spark"]["app_id"] == app_id

    ok(cli("runs", "cancel", "run.train"))
    ok(cli("runs", "wait", "run.train", timeout=RUN_TIMEOUT), code=1)
    assert run_show(cli)["status"] == "canceled"

    def released() -> bool:
        status = cluster.status()
        active = status["activeapps"]
        # No core is held but by other tests' applications (none when the cluster is ours).
        return app_id not in [a["id"] for a in active] and status["coresused"] == sum(
            int(a["cores"]) for a in active
        )

    wait_until("the master to end the application and free its cores", released)
    assert any(a["id"] == app_id for a in cluster.status()["completedapps"])


HOLD_LINES = '  script = "train.py"\n  env = { HOLD = "1" }\n'


@pytest.fixture
def default_workdir(tfuser: TestUser) -> Iterator[Path]:
    """The gateway's default workdir (~/.trainform/spark of tfuser); removed after the test
    if the test made it, else the run folders the test added."""
    workdir = tfuser.home / ".trainform" / "spark"
    existed = workdir.exists()
    runs = set((workdir / "runs").iterdir()) if (workdir / "runs").is_dir() else set()
    yield workdir
    if not existed:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for path in (workdir / "runs").iterdir() if (workdir / "runs").is_dir() else []:
        if path not in runs:
            shutil.rmtree(path, ignore_errors=True)


def test_a_gateway_password_never_reaches_state_plan_output_or_the_gateways_run_folder(
    tmp_path: Path,
    sshd: SSHServer,
    tfuser: TestUser,
    cluster: SparkCluster,
    any_user_pyspark: AnyUserPyspark,
    default_workdir: Path,
) -> None:
    cli = gateway_cli(
        tmp_path,
        sshd,
        cluster,
        any_user_pyspark,
        password="var.pw",
        host_key=sshd.fingerprint,
    )
    hcl = (cli.cwd / "main.train.hcl").read_text()
    cli.write("main.train.hcl", 'variable "pw" {\n  type = string\n  sensitive = true\n}\n' + hcl)
    secret = {"TRAINFORM_VAR_pw": tfuser.password}
    plan_file = tmp_path / "saved.plan"
    results = [ok(cli("plan", "--out", str(plan_file), **secret))]
    assert "keys are safer" in results[0].all, results[0].all
    since = sshd.log_size()
    results.append(apply(cli, str(plan_file), **secret))
    assert "Accepted password for tfuser" in sshd.log(since)
    assert "training done" in results[-1].out, results[-1].out
    # New processes reach the gateway with the password from the configuration.
    results.append(ok(cli("plan", "-detailed-exitcode", **secret), 0))
    results.append(ok(cli("runs", "logs", "run.train", **secret)))
    results.append(ok(cli("runs", "show", "run.train", "--json", **secret)))
    assert json.loads(results[-1].out)["status"] == "completed", results[-1].out
    results.append(ok(cli("runs", "show", "run.train", **secret)))
    results.append(ok(cli("show", "--json", **secret)))
    results.append(ok(cli("compute", "show", "spark", "--json", **secret)))
    results.append(ok(cli("plan", "--out", str(plan_file), **secret)))

    # The default workdir: ~/.trainform/spark on the gateway.
    assert compute_values(cli, **secret)["workdir_path"] == str(default_workdir)
    run = handle(cli)
    run_dir = Path(run["nodes"][0]["run_dir"])
    assert run_dir.parent == default_workdir / "runs" and run_dir.is_dir(), run
    assert "password" not in run["target"] and "password" not in run["spark"], run

    for result in results:
        assert tfuser.password not in result.all, result.all
    needle = tfuser.password.encode()
    state = cli.cwd / ".trainform"
    holding = [
        str(p)
        for root in (cli.cwd, plan_file.parent, run_dir)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    ]
    assert holding == [], holding
    assert (state / "state.db").is_file() and plan_file.is_file()
    assert (run_dir / "output.log").is_file() and (run_dir / "spec.json").is_file()
