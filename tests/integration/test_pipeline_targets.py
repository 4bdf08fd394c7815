"""A three-step pipeline across three targets (issue 17), through the real CLI: a dataset on
this machine; `prep` on a docker-cluster compute (a real Docker engine) reads it and writes
the named output `features`; `train` over SSH (a real OpenSSH server on 127.0.0.1, as tfuser)
reads `run.prep.outputs["features"]` and writes the output `model`; `evaluate` on the local
compute reads `run.train.outputs["model"]`.

Covered: outputs flow from target to target; a prep whose code changes but whose output comes
out byte-identical leaves train and evaluate reused (same run ids); a changed dataset file
resubmits the whole chain; the SSH host is sent the features blobs once, and on a rerun where
only train's code changed, only that script.

Fixtures: `cli` (tests/conftest.py); the server, `tfuser` and keys (conftest.py here);
`base_image`, `docker_client` and `no_leftovers` (tests/docker_engine.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from docker_engine import managed
from helpers import ok
from test_ssh_compute import ENVIRONMENT, compute_block, upload_of

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, UserKey

pytestmark = pytest.mark.usefixtures("no_leftovers")

# About 14 kB a file: big enough that the features blob shows in the bytes an upload sends
# (a tar stream pads to 10 kB records), small enough to keep the test quick.
DATA = {f"f{i}.csv": "".join(f"row,{i},{j}\n" for j in range(1000)) for i in (1, 2, 3)}
CHANGED_F2 = DATA["f2.csv"] + "row,2,new\n"

PREP = """\
import os, socket
d = os.environ["TRAINFORM_INPUT_RAW"]
os.makedirs("outputs/features", exist_ok=True)
rows = sorted(open(os.path.join(d, f)).read() for f in sorted(os.listdir(d)))
open("outputs/features/all.txt", "w").write("".join(rows))
print("prep read", len(rows), "files on", socket.gethostname())
"""

# The model depends on the data: a changed row changes it.
TRAIN = """\
import getpass, hashlib, os
print("train as", getpass.getuser())
p = os.environ["TRAINFORM_INPUT_FEATURES"]
rows = open(os.path.join(p, "all.txt")).read()
print("train sees", sorted(os.listdir(p)), rows.count("row"), "rows")
os.makedirs("outputs", exist_ok=True)
open("outputs/model.txt", "w").write("model of " + hashlib.sha256(rows.encode()).hexdigest())
"""

EVALUATE = """\
import os, socket
print("evaluate on", socket.gethostname())
print("evaluate got", open(os.environ["TRAINFORM_INPUT_MODEL"]).read())
"""


def config(image: str, server: SSHServer, key: UserKey, workdir: str) -> str:
    return (
        'compute "local" {\n  type = "local"\n}\n'
        'compute "cpu" {\n'
        '  type         = "docker-cluster"\n'
        f'  node_image   = "{image}"\n'
        "  min_nodes    = 1\n"
        "  max_nodes    = 1\n"
        '  idle_timeout = "60s"\n'
        "}\n"
        + compute_block(server, workdir, key=key)
        + ENVIRONMENT
        + """\
dataset "raw" {
  source      = "data"
  description = "a few rows"
}

run "prep" {
  experiment = "pipeline"
  compute    = compute.cpu
  source_dir = "src/prep"
  script     = "prep.py"
  inputs     = { raw = dataset.raw }
  outputs    = { features = "outputs/features" }
}

run "train" {
  experiment   = "pipeline"
  compute      = compute.box
  environment  = environment.system
  source_dir   = "src/train"
  script       = "train.py"
  max_duration = "2m"
  inputs       = { features = run.prep.outputs["features"] }
  outputs      = { model = "outputs/model.txt" }
}

run "evaluate" {
  experiment = "pipeline"
  compute    = compute.local
  source_dir = "src/evaluate"
  script     = "evaluate.py"
  inputs     = { model = run.train.outputs["model"] }
}
"""
    )


def latest_ids(cli: CLI) -> dict[str, str]:
    """The latest run id of each run address (`runs list` lists newest first)."""
    ids: dict[str, str] = {}
    for row in json.loads(ok(cli("runs", "list", "--json")).out):
        ids.setdefault(row["address"], row["id"])
    return ids


def run_show(cli: CLI, ref: str) -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", ref, "--json")).out))


def log_of(cli: CLI, ref: str) -> str:
    return ok(cli("runs", "logs", ref)).out


def model_line(log: str) -> str:
    found = re.search(r"^evaluate got (model of [0-9a-f]{64})$", log, re.M)
    assert found, log
    return found.group(1)


def test_a_pipeline_across_docker_cluster_ssh_and_local_flows_reuses_and_resubmits(
    cli: CLI,
    base_image: str,
    docker_client: Any,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tmp_path: Path,
) -> None:
    cli.write("main.train.hcl", config(base_image, sshd, user_key, f"{remote_tmp}/tf"))
    for name, text in DATA.items():
        cli.write(f"data/{name}", text)
    cli.write("src/prep/prep.py", PREP)
    cli.write("src/train/train.py", TRAIN)
    cli.write("src/evaluate/evaluate.py", EVALUATE)
    try:
        _scenario(cli)
    finally:
        ok(cli("destroy", "-auto-approve", timeout=180))
    assert managed(docker_client, tmp_path) == []


def _scenario(cli: CLI) -> None:
    features = "".join(sorted(DATA.values()))

    # 1. The first apply: all three complete, and what each made reaches the next.
    first = ok(cli("apply", "-auto-approve", timeout=300))
    for ref in ("run.prep", "run.train", "run.evaluate"):
        assert f"{ref}: Completed" in first.out, first.all
        assert run_show(cli, ref)["status"] == "completed", ref
    # prep ran on a node container (another hostname), evaluate on this machine.
    prep_log = log_of(cli, "run.prep")
    assert "prep read 3 files on " in prep_log, prep_log
    assert f"prep read 3 files on {socket.gethostname()}\n" not in prep_log, prep_log
    train_log = log_of(cli, "run.train")
    assert "train as tfuser" in train_log and "train sees ['all.txt'] 3000 rows" in train_log
    evaluate_log = log_of(cli, "run.evaluate")
    assert f"evaluate on {socket.gethostname()}\n" in evaluate_log, evaluate_log
    model = model_line(evaluate_log)
    assert model == "model of " + hashlib.sha256(features.encode()).hexdigest()
    # The SSH host got train's script and the features blob, which it had never seen.
    upload = upload_of(cli)
    assert upload["files"] == 2, upload
    assert upload["bytes"] >= len(TRAIN) + len(features), upload
    ids = latest_ids(cli)
    ok(cli("plan", "-detailed-exitcode"), 0)

    # 2. prep's code changes, its output does not: train and evaluate are reused.
    cli.write("src/prep/prep.py", PREP + "# a comment changes nothing it writes\n")
    plan = ok(cli("plan", "-detailed-exitcode"), 2).out
    assert "# run.prep will be resubmitted" in plan, plan
    assert (
        "# run.train may be resubmitted, depending on run.prep's outputs "
        "(decided by apply once they are known)"
    ) in plan, plan
    second = ok(cli("apply", "-auto-approve", timeout=300))
    assert "run.prep: Completed" in second.out, second.all
    assert (
        "run.train: Reused: its inputs came out as its last run read them, "
        "so it was not resubmitted"
    ) in second.out, second.all
    now = latest_ids(cli)
    assert now["run.prep"] != ids["run.prep"]
    assert (now["run.train"], now["run.evaluate"]) == (ids["run.train"], ids["run.evaluate"])
    ok(cli("plan", "-detailed-exitcode"), 0)

    # 3. A dataset file changes: prep, train (whose model depends on the rows) and evaluate.
    cli.write("data/f2.csv", CHANGED_F2)
    plan = ok(cli("plan", "-detailed-exitcode"), 2).out
    assert "# run.prep will be resubmitted: input raw changed (from dataset.raw)" in plan, plan
    third = ok(cli("apply", "-auto-approve", timeout=300))
    for ref in ("run.prep", "run.train", "run.evaluate"):
        assert f"{ref}: Completed" in third.out, third.all
    assert "Reused" not in third.out, third.out
    ids, now = now, latest_ids(cli)
    assert all(now[ref] != ids[ref] for ref in now), (ids, now)
    changed = "".join(sorted({**DATA, "f2.csv": CHANGED_F2}.values()))
    assert model_line(log_of(cli, "run.evaluate")) == (
        "model of " + hashlib.sha256(changed.encode()).hexdigest()
    )
    ok(cli("plan", "-detailed-exitcode"), 0)

    # 4. Only train's code changes: the host already has the features; one blob travels.
    cli.write("src/train/train.py", TRAIN + "# tuned\n")
    fourth = ok(cli("apply", "-auto-approve", timeout=300))
    assert "run.train: Completed" in fourth.out, fourth.all
    assert "run.prep: Completed" not in fourth.out, fourth.out
    # The model is a function of the rows alone: evaluate's input came out unchanged.
    assert "run.evaluate: Reused" in fourth.out, fourth.out
    upload = upload_of(cli)
    assert upload["files"] == 1, upload
    assert upload["bytes"] < len(features), upload
