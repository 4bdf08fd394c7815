"""Multi-node runs and a run's resource options on the real two-node Slurm test cluster
(tests/slurm.py), through the real CLI: a 2-node run whose ranks rendezvous over a socket
with the variables trainform's launcher gives them, each rank's log and outputs; the
``#SBATCH`` lines a run's ``slurm { }`` block makes; requests larger than any node of the
partition refused at plan time, naming the limit."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import CLI, base_env, failed, ok
from slurm import SlurmCluster

# Rank 0 listens on MASTER_ADDR:MASTER_PORT, rank 1 connects: each records what it got.
RENDEZVOUS = """\
import json, os, socket, time

rank = int(os.environ["NODE_RANK"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
if rank == 0:
    server = socket.create_server((addr, port))
    server.settimeout(120)
    conn, _ = server.accept()
    heard = conn.recv(100).decode()
    conn.sendall(b"hello from rank 0")
else:
    deadline = time.time() + 120
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    conn.sendall(b"hello from rank 1")
    heard = conn.recv(100).decode()
names = ("NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID", "SLURM_NODEID")
seen = {name: os.environ.get(name) for name in names}
seen["heard"] = heard
out = os.environ["TRAINFORM_OUTPUT_DIR"]
with open(os.path.join(out, "rendezvous.json"), "w") as f:
    json.dump(seen, f)
print("rank", rank, "heard", repr(heard), flush=True)
"""


def config(tmp_path: Path, cluster: SlurmCluster, run: str) -> CLI:
    """A slurm compute on the cluster (workdir in `tmp_path`) and the given run block text."""
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    cli = CLI(folder, {**base_env(), "SLURM_CONF": str(cluster.conf)})
    cli.write("src/train.py", RENDEZVOUS)
    cli.write(
        "main.train.hcl",
        f'compute "hpc" {{\n  type    = "slurm"\n  workdir = "{tmp_path / "shared"}"\n}}\n' + run,
    )
    return cli


def run_block(body: str) -> str:
    return (
        'run "train" {\n'
        '  experiment = "hpc"\n'
        "  compute    = compute.hpc\n"
        '  source_dir = "src"\n'
        '  script     = "train.py"\n' + body + "}\n"
    )


def test_a_two_node_run_rendezvous_with_its_logs_and_outputs_from_both_nodes(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    slurm = '  slurm {\n    tasks_per_node = 1\n    cpus_per_task = 1\n    memory = "100m"\n  }\n'
    cli = config(tmp_path, slurm_cluster, run_block("  node_count = 2\n" + slurm))
    ok(cli("apply", "-auto-approve"))
    shown = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    assert shown["status"] == "completed", shown

    (script,) = (tmp_path / "shared" / "runs").glob("*/job.sbatch")
    text = script.read_text()
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=100",
    ):
        assert f"{line}\n" in text, text
    assert "exec srun --nodes=2 --ntasks=2 --ntasks-per-node=1" in text, text

    for rank in (0, 1):
        log = ok(cli("runs", "logs", "run.train", "--node", str(rank))).out
        assert f"rank {rank} heard 'hello from rank {1 - rank}'" in log, log
    collected = Path(shown["outputs_path"]).parent  # rank 0 there, rank N in nodes/N
    found = {}
    for path in (collected, collected / "nodes" / "1"):
        seen = json.loads((path / "outputs" / "rendezvous.json").read_text())
        found[seen["NODE_RANK"]] = seen
    assert sorted(found) == ["0", "1"], found
    job_ids = {seen["SLURM_JOB_ID"] for seen in found.values()}
    assert len(job_ids) == 1 and job_ids != {None}, found
    for rank, seen in found.items():
        # MASTER_ADDR: the first node's NodeAddr (the test nodes' names do not resolve)
        assert seen["MASTER_ADDR"] == "127.0.0.1", seen
        assert seen["WORLD_SIZE"] == "2" and seen["SLURM_NODEID"] == rank, seen

    # A resource request is not an input: changing it does not resubmit the finished run.
    cli.write("main.train.hcl", (cli.cwd / "main.train.hcl").read_text().replace("100m", "200m"))
    planned = ok(cli("plan")).out
    assert "resubmit" not in planned, planned


def test_requests_larger_than_any_node_of_the_partition_are_refused_at_plan_time(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = config(tmp_path, slurm_cluster, "")
    ok(cli("apply", "-auto-approve"))  # attach: the partition facts are recorded
    slurm = (
        "  slurm {\n    tasks_per_node = 4\n    cpus_per_task = 64\n"
        '    memory = "4t"\n    gpus_per_node = 1\n  }\n'
    )
    cli.write(
        "main.train.hcl",
        (cli.cwd / "main.train.hcl").read_text() + run_block("  node_count = 3\n" + slurm),
    )
    failed(
        cli("plan"),
        "main.train.hcl:",
        "partition debug: it has 2 node(s), the run asks 3 (node_count)",
        "CPUs, the run asks 256 (tasks_per_node 4 x cpus_per_task 64)",
        "MB of memory, the run asks 4194304 MB",
        "partition debug: largest node has 0 GPUs, the run asks 1 (gpus_per_node)",
    )
    # A run's own partition is checked the same way: gpu has one node.
    cli.write(
        "main.train.hcl",
        (cli.cwd / "main.train.hcl")
        .read_text()
        .replace(slurm, '  slurm {\n    partition = "gpu"\n  }\n'),
    )
    failed(cli("plan"), "partition gpu: it has 1 node(s), the run asks 3 (node_count)")


def test_a_slurm_block_on_a_run_of_other_compute_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    cli = CLI(folder, base_env())
    cli.write("src/train.py", "print(1)\n")
    cli.write(
        "main.train.hcl",
        'compute "here" {\n  type = "local"\n}\n'
        'run "train" {\n'
        '  experiment = "x"\n'
        "  compute    = compute.here\n"
        '  source_dir = "src"\n'
        '  script     = "train.py"\n'
        "  slurm {\n    exclusive = true\n  }\n"
        "}\n",
    )
    failed(cli("plan"), "main.train.hcl:4", "a slurm { } block", "'local'")
