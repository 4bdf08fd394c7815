"""Every rank of a multi-node run on an SSH pool is heard, through the real CLI against two
real OpenSSH servers on 127.0.0.1 (as tfuser): `apply` streams each rank's lines under
`run.ddp[N] | `, `runs logs` shows rank 0, `--node N` or `--all-nodes` (also while
following a running run), and when rank 1 fails, apply's failure summary shows rank 1's
last lines and names its host.

Fixtures: `cli` (tests/conftest.py); the servers, `tfuser` and keys
(tests/integration/conftest.py). Helpers come from tests/helpers.py and test_ssh_compute.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import failed, ok
from test_ssh_compute import (  # noqa: F401 (reap_runs: an autouse fixture for this module too)
    ENVIRONMENT,
    pool_block,
    reap_runs,
    run_block,
    run_show,
)

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, UserKey

# Each rank prints lines of its own, a second one after a pause (so a follower sees them
# arrive while the run goes on).
RANKS = """\
import os, time
rank = int(os.environ["TRAINFORM_NODE_RANK"])
print(f"hello from rank {rank} of {os.environ['TRAINFORM_NUM_NODES']}", flush=True)
time.sleep(float(os.environ.get("PAUSE", "0")))
print(f"rank {rank} says goodbye", flush=True)
"""

# Rank 1 fails with a message of its own; rank 0 would wait a minute (it is stopped).
RANK1_FAILS = """\
import os, sys, time
rank = int(os.environ["TRAINFORM_NODE_RANK"])
print(f"rank {rank} starting", flush=True)
if rank == 1:
    print("rank 1 gives up: shard 7 checksum mismatch (marker 4e1d)", file=sys.stderr, flush=True)
    sys.exit(3)
time.sleep(60)
"""


def prefixed_lines(out: str, address: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(address)]


def test_every_rank_is_streamed_by_apply_and_shown_by_runs_logs(
    cli: CLI,
    sshd_factory: Callable[..., SSHServer],
    user_key: UserKey,
    remote_tmp: str,
    tmp_path: Path,
) -> None:
    a, b = sshd_factory(), sshd_factory()
    pool = pool_block(a, b, f"{remote_tmp}/tf", user_key, tmp_path) + ENVIRONMENT
    cli.write("main.train.hcl", pool + run_block("ddp", "ranks.py", node_count=2))
    cli.write("src/ranks.py", RANKS)
    out = ok(cli("apply", "--auto-approve")).out

    # Each rank's lines under its own prefix, all prefixes padded to one width (that of the
    # longest address in the plan, environment.system).
    for rank in (0, 1):
        for text in (f"hello from rank {rank} of 2", f"rank {rank} says goodbye"):
            assert re.search(rf"^run\.ddp\[{rank}\] +\| {text}$", out, re.M), out
    streamed = prefixed_lines(out, "run.ddp[")
    assert len(streamed) == 4, out
    assert {line.index(" | ") for line in streamed} == {len("environment.system")}, out

    # runs logs: rank 0 by default, --node N, --all-nodes (one rank after the other).
    rank0 = ok(cli("runs", "logs", "run.ddp")).out
    assert "hello from rank 0 of 2" in rank0 and "rank 1" not in rank0, rank0
    assert not rank0.startswith("run.ddp"), rank0
    rank1 = ok(cli("runs", "logs", "run.ddp", "--node", "1")).out
    assert "hello from rank 1 of 2" in rank1 and "rank 0" not in rank1, rank1
    both = ok(cli("runs", "logs", "run.ddp", "--all-nodes")).out
    assert "run.ddp[0] | hello from rank 0 of 2\n" in both, both
    assert "run.ddp[1] | hello from rank 1 of 2\n" in both, both
    assert "run.ddp[1] | rank 1 says goodbye\n" in both, both

    # A rank the run does not have: a clear error naming the node count.
    failed(cli("runs", "logs", "run.ddp", "--node", "2"), "--node 2", "has 2 nodes (ranks 0 to 1)")

    # --all-nodes --follow on a running run: every rank's lines as they arrive, then it ends.
    cli.write(
        "main.train.hcl",
        pool + run_block("ddp", "ranks.py", node_count=2, env={"PAUSE": "2"}),
    )
    ok(cli("apply", "--auto-approve", "--detach"))
    assert run_show(cli, "run.ddp")["status"] in ("queued", "preparing", "running")
    followed = ok(cli("runs", "logs", "run.ddp", "--all-nodes", "--follow")).out
    for rank in (0, 1):
        assert f"run.ddp[{rank}] | hello from rank {rank} of 2\n" in followed, followed
        assert f"run.ddp[{rank}] | rank {rank} says goodbye\n" in followed, followed
    assert run_show(cli, "run.ddp")["status"] == "completed"


def test_a_failing_rank_is_named_and_its_last_lines_are_in_the_failure_summary(
    cli: CLI,
    sshd_factory: Callable[..., SSHServer],
    user_key: UserKey,
    remote_tmp: str,
    tmp_path: Path,
) -> None:
    a, b = sshd_factory(), sshd_factory()
    cli.write(
        "main.train.hcl",
        pool_block(a, b, f"{remote_tmp}/tf", user_key, tmp_path)
        + ENVIRONMENT
        + run_block("ddp", "fails.py", node_count=2),
    )
    cli.write("src/fails.py", RANK1_FAILS)
    result = failed(cli("apply", "--auto-approve", timeout=90))
    out = result.out
    marker = "rank 1 gives up: shard 7 checksum mismatch (marker 4e1d)"
    assert re.search(rf"^run\.ddp\[1\] +\| {re.escape(marker)}$", out, re.M), out

    # The summary names rank 1's host (not rank 0, which was stopped because of it) and
    # shows rank 1's last lines under it; rank 0's lines are not part of it.
    summary = out[out.index("Apply incomplete.") :]
    assert f"node {b.endpoint}: exit code 3" in summary, summary
    header = f"rank 1 ({b.endpoint}):"
    assert header in summary, summary
    assert marker in summary[summary.index(header) :], summary
    assert "rank 0 (" not in summary and "rank 0 starting" not in summary, summary
    run = run_show(cli, "run.ddp")
    assert run["status"] == "failed" and b.endpoint in run["message"], run
