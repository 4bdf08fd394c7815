"""Every rank of a multi-node run on a docker-cluster is heard, through the real CLI and a
real Docker engine: `apply` streams each rank's lines under `run.ddp[N] | `, `runs logs`
shows rank 0, `--node N` or `--all-nodes`, and when rank 1 fails, apply's failure summary
names rank 1's node container and shows its last lines.

Uses the `no_leftovers` fixture (tests/docker_engine.py) and test_cluster.py's blocks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import failed, ok
from test_cluster import cluster_block, compute_show, destroy_leaves_nothing, run_block, run_show

pytestmark = pytest.mark.usefixtures("no_leftovers")

RANKS = """\
import os
rank = int(os.environ["NODE_RANK"])
print(f"hello from rank {rank} of {os.environ['WORLD_SIZE']}", flush=True)
print(f"rank {rank} says goodbye", flush=True)
"""

# Rank 1 fails with a message of its own; rank 0 would wait a minute (it is stopped).
RANK1_FAILS = """\
import os, sys, time
rank = int(os.environ["NODE_RANK"])
print(f"rank {rank} starting", flush=True)
if rank == 1:
    print("rank 1 gives up: shard 7 checksum mismatch (marker 9b2c)", file=sys.stderr, flush=True)
    sys.exit(3)
time.sleep(60)
"""


def test_every_rank_is_heard_and_a_failing_rank_is_summarised(
    cli: Any, base_image: str, docker_client: Any, tmp_path: Path
) -> None:
    cluster = cluster_block(base_image, 0, 2)
    cli.write("src/ranks.py", RANKS)
    cli.write("src/fails.py", RANK1_FAILS)
    cli.write("main.train.hcl", cluster + run_block("ddp", nodes=2, script="ranks.py"))
    out = ok(cli("apply", "-auto-approve", timeout=180)).out

    # Each rank's lines under its own prefix, padded to the plan's longest (compute.cpu).
    for rank in (0, 1):
        for text in (f"hello from rank {rank} of 2", f"rank {rank} says goodbye"):
            assert re.search(rf"^run\.ddp\[{rank}\] +\| {text}$", out, re.M), out
    streamed = [line for line in out.splitlines() if line.startswith("run.ddp[")]
    assert {line.index(" | ") for line in streamed} == {len("compute.cpu")}, out

    rank0 = ok(cli("runs", "logs", "run.ddp")).out
    assert "hello from rank 0 of 2" in rank0 and "rank 1" not in rank0, rank0
    rank1 = ok(cli("runs", "logs", "run.ddp", "--node", "1")).out
    assert "hello from rank 1 of 2" in rank1 and "rank 0" not in rank1, rank1
    both = ok(cli("runs", "logs", "run.ddp", "--all-nodes")).out
    for rank in (0, 1):
        assert f"run.ddp[{rank}] | hello from rank {rank} of 2\n" in both, both
        assert f"run.ddp[{rank}] | rank {rank} says goodbye\n" in both, both
    failed(cli("runs", "logs", "run.ddp", "--node", "5"), "--node 5", "has 2 nodes (ranks 0 to 1)")

    # Rank 1 fails: the summary names its node container and shows its last lines.
    cli.write(
        "main.train.hcl",
        cluster
        + run_block("ddp", nodes=2, script="ranks.py")
        + run_block("bad", nodes=2, script="fails.py"),
    )
    out = failed(cli("apply", "-auto-approve", timeout=180)).out
    marker = "rank 1 gives up: shard 7 checksum mismatch (marker 9b2c)"
    assert re.search(rf"^run\.bad\[1\] +\| {re.escape(marker)}$", out, re.M), out
    summary = out[out.index("Apply incomplete.") :]
    header = re.search(r"rank 1 \((\S+)\):", summary)
    assert header, summary
    node = header.group(1)
    assert node in {n["name"] for n in compute_show(cli)["nodes"]}, (node, summary)
    assert f"node {node}: exit code 3" in summary, summary
    assert marker in summary[header.end() :], summary
    assert "rank 0 (" not in summary and "rank 0 starting" not in summary, summary
    assert run_show(cli, "run.bad")["status"] == "failed"

    destroy_leaves_nothing(cli, docker_client, tmp_path)
