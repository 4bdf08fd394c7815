"""What a run asks of Slurm: its ``slurm { }`` block and node count as ``#SBATCH`` options,
checked at plan time against the partition facts attach recorded, and the batch script line
that starts one launcher per node of a multi-node run.

A multi-node run has one folder per node, ``RUN_DIR/nodes/RANK`` (the workdir is shared, and
each launcher owns its folder); the job's batch shell runs ``srun`` with one task per node,
and each task starts the launcher of the folder of its ``SLURM_NODEID``. Each node's spec
holds its rank and the rendezvous port; its launcher looks up the nodes' addresses
(``MASTER_ADDR``: the first node of ``SLURM_JOB_NODELIST``) once Slurm placed the job (see
``launcher.slurm_node_addresses``).
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from trainform.providers import slurm_cli as cli
from trainform.runs import nodes as multinode

COUNTS = ("tasks_per_node", "gpus_per_node", "cpus_per_task")


def memory_mb(value: object) -> int:
    """Megabytes (MiB, as Slurm counts them) in a memory size such as ``"8g"`` or
    ``"512m"``, rounded up. A bare number is refused: Slurm would read megabytes where
    Docker's sizes read bytes. Raises ValueError naming the form."""
    from trainform.runs.images import parse_size

    text = str(value).strip()
    if not isinstance(value, str) or not text or text[-1].isdigit():
        raise ValueError(f"memory = {value!r} needs a unit, such as 512m or 8g")
    return max(1, math.ceil(parse_size(text) / (1 << 20)))


def _count(value: object) -> int | None:
    """A whole number of at least 1, or None for anything else."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def option_problems(options: dict[str, Any]) -> list[str]:
    """What is wrong with the values of a run's ``slurm { }`` block, as messages."""
    problems = [
        f"slurm: {name} must be a whole number of at least 1, not {options[name]!r}"
        for name in COUNTS
        if isinstance(options.get(name), (int, float)) and _count(options[name]) is None
    ]
    if isinstance(options.get("memory"), (str, int, float)):
        try:
            memory_mb(options["memory"])
        except ValueError as exc:
            problems.append(f"slurm: {exc}")
    return problems


def partition_name(compute: dict[str, Any], options: dict[str, Any]) -> str:
    """The partition the run's job goes to: the run's own, the compute's, or ``""`` (the
    cluster's default)."""
    return str(options.get("partition") or compute.get("partition") or "")


def size_problems(compute: dict[str, Any], node_count: int, options: dict[str, Any]) -> list[str]:
    """Why a job of ``node_count`` nodes asking ``options`` could never start on its
    partition, from the partition facts recorded at attach (none while they are not known):
    a partition the cluster does not have or that is not up, more nodes than the partition
    has, or more CPUs (tasks_per_node x cpus_per_task), memory or GPUs per node than its
    largest node has. Each message names the partition and the limit."""
    facts = compute.get("facts")
    partitions = facts.get("partitions") if isinstance(facts, dict) else None
    if not isinstance(partitions, dict) or not partitions:
        return []
    wanted = partition_name(compute, options)
    name = wanted or next((n for n, p in partitions.items() if p.get("default")), "")
    part = partitions.get(name)
    if not isinstance(part, dict):
        if not wanted:
            return []  # no default partition: the compute's own check says so
        return [
            f"slurm: partition {wanted!r} does not exist on this Slurm cluster "
            f"(partitions: {', '.join(sorted(partitions))})"
        ]
    if options.get("partition") and part.get("state") != "up":
        return [f"slurm: partition {name!r} is {part.get('state')}, not up: it takes no jobs"]
    tasks = _count(options.get("tasks_per_node")) or 1
    cpus = _count(options.get("cpus_per_task")) or 1
    gpus = _count(options.get("gpus_per_node")) or 0
    try:
        memory = memory_mb(options["memory"]) if options.get("memory") else 0
    except ValueError:
        memory = 0  # option_problems names it
    nodes = part.get("nodes", 0)
    asks = [
        (node_count, nodes, f"it has {nodes} node(s), the run asks {node_count} (node_count)"),
        (
            tasks * cpus,
            part.get("cpus", 0),
            f"largest node has {part.get('cpus')} CPUs, the run asks {tasks * cpus} "
            f"(tasks_per_node {tasks} x cpus_per_task {cpus})",
        ),
        (
            memory,
            part.get("memory_mb", 0),
            f"largest node has {part.get('memory_mb')} MB of memory, the run asks {memory} MB "
            f"(memory = {options.get('memory')!r})",
        ),
        (
            gpus,
            part.get("gpus", 0),
            f"largest node has {part.get('gpus')} GPUs, the run asks {gpus} (gpus_per_node)",
        ),
    ]
    return [
        f"slurm: partition {name}: {why}"
        for asked, limit, why in asks
        if isinstance(limit, int) and asked > limit
    ]


def sbatch_options(
    compute: dict[str, Any], node_count: int, options: dict[str, Any], max_duration: float | None
) -> cli.SbatchOptions:
    """The job's options: the compute's partition, account, qos and constraint unless the
    run's ``slurm { }`` block overrides them, and the block's resource requests."""
    memory = options.get("memory")

    def chosen(name: str) -> str:
        return str(options.get(name) or compute.get(name) or "")

    return cli.SbatchOptions(
        node_count=node_count,
        ntasks_per_node=_count(options.get("tasks_per_node")),
        gpus_per_node=_count(options.get("gpus_per_node")),
        cpus_per_task=_count(options.get("cpus_per_task")),
        mem=memory_mb(memory) if memory else None,
        exclusive=bool(options.get("exclusive")),
        max_duration=max_duration,
        partition=chosen("partition"),
        account=chosen("account"),
        qos=chosen("qos"),
        constraint=chosen("constraint"),
    )


def node_dirs(run_dir: str, node_count: int) -> list[str]:
    """The run folder of each node in rank order: the run's folder for a single-node run,
    ``RUN_DIR/nodes/RANK`` for more."""
    if node_count <= 1:
        return [run_dir]
    return [f"{run_dir}/nodes/{rank}" for rank in range(node_count)]


def node_specs(spec: dict[str, Any], run_id: str, node_count: int) -> list[dict[str, Any]]:
    """The launcher spec of each node in rank order. The run's script sees Slurm's
    ``SLURM_*`` variables also when ``env_passthrough`` narrows what it inherits. A node of a
    multi-node run gets the rendezvous variables known before Slurm places the job (rank,
    node count, port) and ``node_addresses``, which makes its launcher look up
    ``MASTER_ADDR`` and ``TRAINFORM_NODE_IPS`` when it starts."""
    passthrough = spec.get("env_passthrough")
    if passthrough is not None:
        spec = {**spec, "env_passthrough": [*passthrough, "SLURM_*"]}
    if node_count <= 1:
        return [spec]
    port = multinode.rendezvous_port(run_id)
    later = ("MASTER_ADDR", "TRAINFORM_NODE_IPS")
    return [
        {
            **spec,
            "extra_env": {
                k: v
                for k, v in multinode.node_env(rank, [""] * node_count, port).items()
                if k not in later
            },
            "node_addresses": "slurm",
        }
        for rank in range(node_count)
    ]


def launch_line(lib: str, run_dir: str, node_count: int, options: dict[str, Any]) -> str:
    """The batch script's last line: ``exec`` the launcher of the run's folder, or for a
    multi-node run ``srun`` one task per node, each starting the launcher of its own folder
    (``$SLURM_NODEID``, the node's index in the job, which is its rank)."""
    launcher = f"{lib}/launcher.py"
    if node_count <= 1:
        return "exec " + shlex.join(["python3", launcher, run_dir])
    asked = [_count(options.get(k)) for k in ("tasks_per_node", "cpus_per_task")]
    cpus = (asked[0] or 1) * (asked[1] or 1) if any(asked) else None
    per_node = 'exec python3 "$0" "$1/nodes/$SLURM_NODEID"'
    return "exec " + shlex.join(
        [*cli.node_tasks_argv(node_count, cpus), "sh", "-c", per_node, launcher, run_dir]
    )
