"""`compute { type = "slurm"; login = "tfuser@127.0.0.1" }` through the real CLI: Slurm's
commands and the shared workdir reached over SSH on a real OpenSSH server on loopback
(tests/integration/conftest.py), the cluster the real two-node Slurm test cluster
(tests/slurm.py). The login shell has no SLURM_CONF: the compute's `slurm_conf` names the
cluster's slurm.conf, and neither this process nor the CLI's environment sets SLURM_CONF.

Jobs run as tfuser, the login user, so the workdir is a folder of tfuser's home
(`remote_tmp`) that the nodes (this machine) read as tfuser.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import CLI, base_env, failed, ok, recorded, wait_until

if TYPE_CHECKING:
    from slurm import SlurmCluster

    from tests.integration.conftest import SSHServer, TestUser, UserKey

ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")

TRAIN = """\
import getpass, json, os, time
from trainform.tracking import log_metric

import helper

for step in range(3):
    print(f"step {step} of training", flush=True)
    log_metric("loss", 1.0 / (step + 1), step=step)
out = os.environ["TRAINFORM_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "who.json"), "w") as fh:
    json.dump({"user": getpass.getuser(), "job": os.environ["SLURM_JOB_ID"]}, fh)
print("training done, helper", helper.VALUE, flush=True)
if os.environ.get("HOLD"):
    print("holding", flush=True)
    time.sleep(300)
"""


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster, tfuser: TestUser) -> Iterator[SlurmCluster]:
    """The session's cluster, idle; tfuser's jobs are cancelled after the test."""
    slurm_cluster.wait_idle()
    yield slurm_cluster
    jobs = slurm_cluster.run("squeue", "--noheader", "--format=%i", "-u", tfuser.name)
    if jobs.stdout.split():
        slurm_cluster.run("scancel", *jobs.stdout.split(), check=False)


def login_cli(
    tmp_path: Path,
    sshd: SSHServer,
    cluster: SlurmCluster,
    workdir: str,
    **options: Any,
) -> CLI:
    """A configuration with a slurm compute reached through `sshd` as tfuser and one run;
    `options` are more attributes of the compute (strings starting with `var.` stay
    references). The CLI's environment has no SLURM_CONF."""
    folder = tmp_path / "config"
    folder.mkdir()
    env = {k: v for k, v in base_env().items() if k != "SLURM_CONF"}
    cli = CLI(folder, env)
    attributes = {
        "type": "slurm",
        "login": f"tfuser@{sshd.address}",
        "port": sshd.port,
        "slurm_conf": str(cluster.conf),
        "partition": "debug",
        "workdir": workdir,
        **options,
    }
    lines = [
        f"  {k} = {v if isinstance(v, str) and v.startswith('var.') else json.dumps(v)}"
        for k, v in attributes.items()
    ]
    cli.write(
        "main.train.hcl",
        'compute "hpc" {\n' + "\n".join(lines) + "\n}\n"
        'environment "system" {\n  python = "python3"\n  user_managed = true\n}\n'
        'run "train" {\n'
        '  experiment  = "slurm-login"\n'
        "  compute     = compute.hpc\n"
        "  environment = environment.system\n"
        '  source_dir  = "src"\n'
        '  script      = "train.py"\n'
        "}\n",
    )
    cli.write("src/train.py", TRAIN)
    cli.write("src/helper.py", "VALUE = 1\n")
    return cli


@pytest.fixture
def keyed(
    tmp_path: Path, sshd: SSHServer, user_key: UserKey, remote_tmp: str, cluster: SlurmCluster
) -> CLI:
    """The configuration of `login_cli`, logging in with tfuser's key to the pinned host key,
    its workdir `remote_tmp/shared`."""
    return login_cli(
        tmp_path,
        sshd,
        cluster,
        f"{remote_tmp}/shared",
        private_key_file=str(user_key.private_path),
        host_key=sshd.fingerprint,
    )


def run_show(cli: CLI, **env: str) -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", "run.train", "--json", **env)).out))


def handle(cli: CLI) -> dict[str, Any]:
    """The latest run's handle as the state records it."""
    return dict(recorded(cli.cwd)["run.train"].computed["handle"])


def compute_values(cli: CLI) -> dict[str, Any]:
    shown = json.loads(ok(cli("show", "--json")).out)["values"]["root_module"]["resources"]
    return dict(next(r for r in shown if r["address"] == "compute.hpc")["values"])


def test_a_run_through_the_login_node_completes_and_a_rerun_sends_only_the_change(
    keyed: CLI, tmp_path: Path, sshd: SSHServer, remote_tmp: str, tfuser: TestUser
) -> None:
    cli, workdir = keyed, f"{remote_tmp}/shared"
    cli.write("src/data.txt", "0123456789abcdef\n" * 4096)  # 68 KiB that never change
    since = sshd.log_size()
    apply = ok(cli("apply", "-auto-approve"))
    assert "Accepted publickey for tfuser" in sshd.log(since)
    # The log was followed over SSH while the job ran (apply prints it as it comes).
    assert "step 2 of training" in apply.out and "run.train: Completed" in apply.out, apply.out
    assert compute_values(cli)["host_keys"] == {sshd.address: sshd.fingerprint}
    described = json.loads(ok(cli("compute", "show", "hpc", "--json")).out)
    assert "debug" in json.dumps(described), described

    shown = run_show(cli)
    assert shown["status"] == "completed" and shown["exit_code"] == 0, shown
    assert shown["metrics"]["loss"]["count"] == 3, shown
    assert "training done, helper 1" in ok(cli("runs", "logs", "run.train")).out

    dest = tmp_path / "fetched"
    ok(cli("runs", "outputs", "run.train", "--to", str(dest)))
    who = json.loads((dest / "who.json").read_text())
    first = handle(cli)
    assert who == {"user": "tfuser", "job": first["job_id"]}, who
    # The run's folder is on the login node's side, owned by the login user.
    run_dir = Path(first["run_dir"])
    assert run_dir.parent == Path(workdir) / "runs"
    assert run_dir.stat().st_uid == tfuser.uid
    assert (run_dir.parent.stat().st_mode & 0o777) == 0o700
    # A later process reaches the same host from the handle: no password, the pinned key.
    assert first["target"]["login"] == f"tfuser@{sshd.address}"
    assert first["target"]["host_keys"] == {sshd.address: sshd.fingerprint}
    assert first["upload"]["files"] == 3 and first["upload"]["bytes"] > 68 << 10, first

    # One file changed: only its blob travels.
    cli.write("src/helper.py", "VALUE = 2\n")
    apply = ok(cli("apply", "-auto-approve"))
    assert "training done, helper 2" in apply.out, apply.out
    second = handle(cli)
    assert second["job_id"] != first["job_id"]
    assert second["upload"]["files"] == 1, second
    assert second["upload"]["bytes"] < 20 << 10, second  # not the unchanged 68 KiB
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_an_unknown_host_key_is_refused_then_trusted_once_then_a_changed_key_is_refused(
    tmp_path: Path,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    cluster: SlurmCluster,
) -> None:
    known_hosts = tmp_path / "known_hosts"  # empty: the server is unknown
    known_hosts.write_text("")
    workdir = f"{remote_tmp}/shared"
    options = {"private_key_file": str(user_key.private_path), "known_hosts": str(known_hosts)}
    cli = login_cli(tmp_path, sshd, cluster, workdir, **options)
    since = sshd.log_size()
    failed(cli("apply", "-auto-approve"), sshd.fingerprint, "trust_on_first_use")
    log = sshd.wait_for_log("do_cleanup", since=since)
    assert "userauth-request" not in log and "Accepted" not in log, log
    assert not Path(workdir).exists()

    # Trust on first use: the key seen is pinned in state.
    hcl = (cli.cwd / "main.train.hcl").read_text()
    cli.write("main.train.hcl", hcl.replace("  port =", "  trust_on_first_use = true\n  port ="))
    ok(cli("apply", "-auto-approve"))
    assert compute_values(cli)["host_keys"] == {sshd.address: sshd.fingerprint}
    assert known_hosts.read_text() == ""

    # Another key now: refused at refresh and apply, credentials never sent, pin kept.
    old = sshd.fingerprint
    sshd.restart(new_host_key=True)
    since = sshd.log_size()
    plan = failed(cli("plan"), "man-in-the-middle", old, sshd.fingerprint)
    assert "compute.hpc" in plan.all, plan.all
    failed(cli("apply", "-auto-approve"), "man-in-the-middle")
    assert "userauth-request" not in sshd.log(since)
    assert recorded(cli.cwd)["compute.hpc"].computed["host_keys"] == {sshd.address: old}


def test_cancel_through_the_login_node(keyed: CLI, cluster: SlurmCluster) -> None:
    cli = keyed
    hcl = (cli.cwd / "main.train.hcl").read_text()
    cli.write(
        "main.train.hcl",
        hcl.replace(
            '  script      = "train.py"\n', '  script = "train.py"\n  env = { HOLD = "1" }\n'
        ),
    )
    ok(cli("apply", "-auto-approve", "--detach"))
    wait_until(
        "the run holding",
        lambda: "holding" in ok(cli("runs", "logs", "run.train")).out,
    )
    assert run_show(cli)["status"] == "running"
    job_id = handle(cli)["job_id"]
    ok(cli("runs", "cancel", "run.train"))
    ok(cli("runs", "wait", "run.train"), code=1)
    assert run_show(cli)["status"] == "canceled"
    # The job ends (the launcher stops the run on scancel's SIGTERM, or scancel kills it).
    wait_until(
        "Slurm to end the job",
        lambda: (j := cluster.job(job_id)) is not None and j.state not in ACTIVE,
    )


def test_a_login_password_never_reaches_state_plan_handle_or_output(
    tmp_path: Path,
    sshd: SSHServer,
    remote_tmp: str,
    tfuser: TestUser,
    cluster: SlurmCluster,
) -> None:
    cli = login_cli(
        tmp_path,
        sshd,
        cluster,
        f"{remote_tmp}/shared",
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
    results.append(ok(cli("apply", "-auto-approve", str(plan_file), **secret)))
    assert "Accepted password for tfuser" in sshd.log(since)
    # New processes reach the login node with the password from the configuration.
    results.append(ok(cli("plan", "-detailed-exitcode", **secret), 0))
    results.append(ok(cli("runs", "logs", "run.train", **secret)))
    results.append(ok(cli("runs", "show", "run.train", "--json", **secret)))
    assert json.loads(results[-1].out)["status"] == "completed"
    results.append(ok(cli("show", "--json", **secret)))
    results.append(ok(cli("plan", "--out", str(plan_file), **secret)))

    assert "password" not in handle(cli)["target"]
    for result in results:
        assert tfuser.password not in result.all, result.all
    needle = tfuser.password.encode()
    holding = [
        str(p)
        for root in (cli.cwd, plan_file.parent, Path(remote_tmp))
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    ]
    assert holding == [], holding
    assert (cli.cwd / ".trainform" / "state.db").is_file() and plan_file.is_file()


def test_slurm_conf_points_this_machines_client_at_the_cluster(
    tmp_path: Path, cluster: SlurmCluster
) -> None:
    assert "SLURM_CONF" not in os.environ
    block = (
        'compute "hpc" {\n  type = "slurm"\n  partition = "gpu"\n'
        f"  workdir = {json.dumps(str(tmp_path / 'shared'))}\n"
        "  slurm_conf = {conf}\n}\n"
    )
    for name, conf in (("relative", "relative/slurm.conf"), ("config", str(cluster.conf))):
        (tmp_path / name).mkdir()
        cli = CLI(tmp_path / name, base_env())
        cli.write("main.train.hcl", block.replace("{conf}", json.dumps(conf)))
    failed(
        CLI(tmp_path / "relative", base_env())("validate"),
        "slurm_conf 'relative/slurm.conf' must be an absolute path",
    )
    ok(cli("apply", "-auto-approve"))
    assert "gpu" in compute_values(cli)["facts"]["partitions"]


def test_a_login_without_user_or_credentials_or_login_options_without_login_are_refused(
    tmp_path: Path,
) -> None:
    cli = CLI(tmp_path, base_env())
    cli.write(
        "main.train.hcl",
        'compute "a" {\n  type = "slurm"\n  login = "login.example"\n  workdir = "/w"\n'
        '  private_key_file = "id"\n}\n'
        'compute "b" {\n  type = "slurm"\n  login = "ml@login.example"\n  workdir = "/w"\n}\n'
        'compute "c" {\n  type = "slurm"\n  workdir = "/w"\n  port = 2222\n'
        "  trust_on_first_use = true\n}\n",
    )
    failed(
        cli("validate"),
        'compute.a: login \'login.example\' must be "user@host" or "user@host:port"',
        "compute.b: set private_key_file (preferred) or password",
        "compute.c: port, trust_on_first_use set without login: options of the login node",
    )
