"""Runs that share a dataset on an ssh compute, through the real CLI against a real OpenSSH
server on 127.0.0.1 (tfuser): the host is sent the ~600 kB dataset once, not once per run
(the bytes their uploads recorded add up to less than twice the dataset), for

- three grid trials of a sweep (`max_concurrent_runs = 3` on the sweep and on the compute),
  which run at the same time (each waits until all three have started); the controller
  submits them one after another, so each finds what the previous one sent;
- three runs of one apply, which the engine submits in parallel: without the file lock
  around a host's blob folder (commit 754476e) two of them sent the whole dataset."""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from helpers import ok
from test_ssh_compute import (  # noqa: F401 (reap_runs: an autouse fixture for this module too)
    ENVIRONMENT,
    compute_block,
    reap_runs,
    upload_of,
)

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, UserKey

# Random bytes do not compress: what travels is at least the data itself.
DATA = {f"f{i}.bin": os.urandom(200_000) for i in (1, 2, 3)}
SIZE = sum(len(b) for b in DATA.values())
LRS = [0.1, 0.01, 0.001]

TRIAL = """\
import argparse, hashlib, os, time
from trainform.tracking import log_metric

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
args, _ = parser.parse_known_args()
# Every trial waits until all three have started: they run at the same time, not in turn.
met = os.environ["MEET_DIR"]
os.makedirs(met, exist_ok=True)
open(os.path.join(met, str(args.lr)), "w").close()
deadline = time.monotonic() + 60
while len(os.listdir(met)) < 3:
    if time.monotonic() > deadline:
        raise SystemExit("the other trials never started")
    time.sleep(0.05)
p = os.environ["TRAINFORM_INPUT_RAW"]
for name in sorted(os.listdir(p)):
    print("read", name, hashlib.sha256(open(os.path.join(p, name), "rb").read()).hexdigest())
log_metric("accuracy", 1.0 - args.lr, step=1)
"""

SWEEP = f"""\
sweep "grid" {{
  experiment = "ssh-sweep-inputs"
  trial {{
    compute      = compute.box
    environment  = environment.system
    source_dir   = "src"
    script       = "train.py"
    arguments    = ["--lr", param.lr]
    max_duration = "2m"
    inputs       = {{ raw = dataset.raw }}
    env          = {{ MEET_DIR = "{{meet}}" }}
  }}
  sampling {{
    algorithm = "grid"
  }}
  parameter "lr" {{
    distribution = "choice"
    values       = {json.dumps(LRS)}
  }}
  objective {{
    metric = "accuracy"
    goal   = "maximize"
  }}
  limits {{
    max_total_runs      = 3
    max_concurrent_runs = 3
  }}
}}
"""


def configure(cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, blocks: str) -> None:
    """The dataset's files, the trial script, and the ssh compute (3 runs at a time), the
    environment, the dataset and ``blocks``."""
    for name, data in DATA.items():
        (cli.cwd / "data").mkdir(exist_ok=True)
        (cli.cwd / "data" / name).write_bytes(data)
    cli.write("src/train.py", TRIAL)
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key, max_concurrent_runs=3)
        + ENVIRONMENT
        + 'dataset "raw" {\n  source = "data"\n}\n'
        + blocks,
    )


def test_three_concurrent_trials_share_one_transfer_of_their_dataset(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    configure(cli, sshd, user_key, remote_tmp, SWEEP.replace("{meet}", f"{remote_tmp}/meet"))
    applied = ok(cli("apply", "-auto-approve", timeout=300))
    shown = json.loads(ok(cli("sweeps", "show", "grid", "--json")).out)
    assert shown["status"] == "completed", (shown, applied.all)
    trials = shown["record"]["trials"]
    assert sorted(t["params"]["lr"] for t in trials) == sorted(LRS), trials
    assert all(t["status"] == "completed" for t in trials), trials

    expected = {name: hashlib.sha256(data).hexdigest() for name, data in DATA.items()}
    uploads: list[dict[str, Any]] = []
    for trial in trials:
        log = ok(cli("runs", "logs", trial["run_id"])).out
        read = dict(line.split(" ")[1:3] for line in log.splitlines() if line.startswith("read "))
        assert read == expected, log
        run = json.loads(ok(cli("runs", "show", trial["run_id"], "--json")).out)
        assert run.get("upload"), run
        uploads.append(run["upload"])
    sent = sum(int(u["bytes"]) for u in uploads)
    # The dataset went to the host once; the trials that waited for the lock found it there.
    assert SIZE <= sent < 2 * SIZE, (SIZE, uploads)


def run_blocks(meet: str) -> str:
    """Three runs of the trial script in one apply, each reading the dataset."""
    return "".join(
        f'run "r{i}" {{\n'
        '  experiment   = "ssh-sweep-inputs"\n'
        "  compute      = compute.box\n"
        "  environment  = environment.system\n"
        '  source_dir   = "src"\n'
        '  script       = "train.py"\n'
        f'  arguments    = ["--lr", "{lr}"]\n'
        '  max_duration = "2m"\n'
        "  inputs       = { raw = dataset.raw }\n"
        f'  env          = {{ MEET_DIR = "{meet}" }}\n'
        "}\n"
        for i, lr in enumerate(LRS)
    )


def test_three_runs_of_one_apply_share_one_transfer_of_their_dataset(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    configure(cli, sshd, user_key, remote_tmp, run_blocks(f"{remote_tmp}/meet"))
    applied = ok(cli("apply", "-auto-approve", timeout=300))
    uploads = []
    for i in range(len(LRS)):
        assert f"run.r{i}: Completed" in applied.out, applied.all
        uploads.append(upload_of(cli, f"run.r{i}"))
    sent = sum(int(u["bytes"]) for u in uploads)
    assert SIZE <= sent < 2 * SIZE, (SIZE, uploads)
