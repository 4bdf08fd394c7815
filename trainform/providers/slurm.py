"""A Slurm cluster as a compute target (``compute "x" { type = "slurm" }``), through this
machine's Slurm client (``sinfo``, ``sbatch``, ``squeue``, ``sacct``, ``scancel``; the cluster
is the one ``SLURM_CONF`` or the default configuration names).

A run is one batch job that runs the stdlib launcher every target runs. Its folder is on the
shared file system (``workdir``), so the snapshot's blobs and the lib are copied there, and
logs, metrics, status and outputs are read from there as for a local run. Slurm's own view of
the job (``squeue`` while it is known to ``slurmctld``, then ``sacct``) decides the status
until the launcher records an outcome in ``status.json``.

A run's ``slurm { }`` block and node count become ``#SBATCH`` options; a multi-node run
is one job whose ``srun`` starts a launcher per node (see :mod:`slurm_resources`).

Not yet: requeue attempts, account and QoS checks through ``sacctmgr``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from trainform.config.schema import Attribute, BlockSchema
from trainform.errors import ProviderError
from trainform.providers import slurm_cli as cli
from trainform.providers import slurm_resources as resources
from trainform.providers.base import (
    MULTI_NODE,
    RUNS,
    TERMINAL,
    Handle,
    Observed,
    PlanValues,
    Provider,
    ResourceState,
    RunRequest,
)
from trainform.providers.slurm_host import LocalSlurmHost, SlurmHost
from trainform.runs import nodes as multinode

SCRIPT_NAME = "job.sbatch"
SLURM_LOG = "slurm.out"  # the batch shell's own output (the launcher writes output.log)


def partition_facts(partition: cli.Partition) -> dict[str, Any]:
    """What attach records about a partition (JSON-serialisable)."""
    return {
        "default": partition.default,
        "state": partition.avail,
        "nodes": partition.node_count,
        "node_states": partition.states,
        "cpus": partition.max_cpus,
        "memory_mb": partition.max_memory_mb,
        "gpus": partition.max_gpus,
        "gres": sorted({g for group in partition.groups for g in group.gres}),
        "time_limit": partition.time_limit,
    }


def partition_problem(partitions: list[cli.Partition], wanted: str) -> str:
    """Why ``wanted`` (``""``: the default partition) cannot take jobs, or ``""``."""
    names = [p.name for p in partitions]
    if not wanted:
        return (
            ""
            if any(p.default for p in partitions)
            else (
                "the cluster has no default partition: set partition "
                f"(partitions: {', '.join(names) or 'none'})"
            )
        )
    found = next((p for p in partitions if p.name == wanted), None)
    if found is None:
        return (
            f"partition {wanted!r} does not exist on this Slurm cluster "
            f"(partitions: {', '.join(names) or 'none'})"
        )
    if not found.up:
        return f"partition {wanted!r} is {found.avail}, not up: it takes no jobs"
    if not any(g.usable for g in found.groups):
        return f"partition {wanted!r} has no usable node (node states: {found.states})"
    return ""


TIME_LIMIT_MARGIN = 60
"""Seconds Slurm's ``--time`` allows beyond the run's ``max_duration`` and grace period: the
launcher ends the run at its limit and records ``timed_out`` itself; Slurm's limit is the
backstop should the launcher not stop it."""


def slurm_time_limit(spec: dict[str, Any]) -> float | None:
    """The ``--time`` of a run's job, in seconds, from its launcher spec (``None`` without
    ``max_duration``: the partition's limit applies)."""
    limit = spec.get("max_duration")
    if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
        return None
    grace = spec.get("grace_seconds")
    grace = grace if isinstance(grace, (int, float)) and not isinstance(grace, bool) else 0
    return float(limit) + float(grace) + TIME_LIMIT_MARGIN


class SlurmComputeProvider(Provider):
    """Runs work as Slurm batch jobs submitted with this machine's Slurm client. Attaching
    reads the cluster's version and partitions; nothing is created, so detaching removes
    nothing."""

    name = "slurm"
    kind = "compute"
    capabilities = frozenset({RUNS, MULTI_NODE})
    verbs: ClassVar[dict[str, str]] = {"create": "attach", "delete": "detach"}
    schema = BlockSchema(
        attributes={
            "description": Attribute(description="Free text."),
            "tags": Attribute("map(string)", default={}, description="Labels."),
            "partition": Attribute(
                description="The partition jobs go to (default: the cluster's default one)."
            ),
            "account": Attribute(description="The account jobs are charged to (--account)."),
            "qos": Attribute(description="The quality of service of jobs (--qos)."),
            "constraint": Attribute(description="Node features jobs require (--constraint)."),
            "workdir": Attribute(
                required=True,
                force_new=True,
                description="A folder on a file system this machine and the compute nodes "
                "share: run folders, the snapshot's files and the launcher go there.",
            ),
            "max_concurrent_runs": Attribute(
                "number", description="Runs of this project allowed at once (default: no limit)."
            ),
            "extra_sbatch_args": Attribute(
                "list(string)",
                default=[],
                description="More sbatch options (not ones trainform sets itself).",
            ),
            "facts": Attribute(
                "map", computed=True, description="Slurm's version and the partitions."
            ),
            "workdir_path": Attribute(computed=True, description="Absolute path of the workdir."),
        },
        description="A Slurm cluster reached through this machine's Slurm client.",
    )

    # -- validation and lifecycle
    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        problems = []
        n = desired.get("max_concurrent_runs")
        if isinstance(n, (int, float)) and n < 1:
            problems.append("max_concurrent_runs must be at least 1")
        workdir = desired.get("workdir")
        if isinstance(workdir, str) and not os.path.isabs(workdir):
            problems.append(
                f"workdir {workdir!r} must be an absolute path on the shared file system"
            )
        extra = desired.get("extra_sbatch_args")
        if isinstance(extra, list):
            try:
                cli.check_extra_sbatch_args(extra)
            except ProviderError as exc:
                problems.append(str(exc))
        return problems

    def host(self, attrs: dict[str, Any]) -> SlurmHost:
        """Where this compute's Slurm commands run and its workdir is reached."""
        return LocalSlurmHost()

    def _partitions(self, host: SlurmHost) -> list[cli.Partition]:
        return cli.parse_sinfo(host.checked(cli.sinfo_argv()))

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        """Refuses, at plan time, a partition that does not exist or takes no jobs."""
        problem = partition_problem(
            self._partitions(self.host(desired)), str(desired.get("partition") or "")
        )
        if problem:
            raise ProviderError(problem, address=address)
        return PlanValues()

    def run_problems(
        self, compute: dict[str, Any], node_count: int, options: dict[str, Any] | None = None
    ) -> list[str]:
        """The run's ``slurm { }`` values, and a request larger than any node of its
        partition (from the recorded facts; see :func:`resources.size_problems`)."""
        options = options or {}
        return resources.option_problems(options) or resources.size_problems(
            compute, node_count, options
        )

    def _attach(self, attrs: dict[str, Any]) -> Observed:
        host = self.host(attrs)
        version = cli.parse_version(host.checked(cli.version_argv()))
        partitions = self._partitions(host)
        workdir = host.prepare_workdir(str(attrs["workdir"]))
        return {
            "facts": {
                "slurm_version": str(version),
                "partitions": {p.name: partition_facts(p) for p in partitions},
            },
            "workdir_path": workdir,
        }

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return self._attach(desired)

    def read(self, resource: ResourceState) -> Observed | None:
        return {**resource.computed, **self._attach(resource.attributes)}

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        return {**prior.computed, **self._attach(desired)}

    def delete(self, prior: ResourceState) -> None:
        return None  # detaching removes nothing from the cluster or the shared folder

    # -- running work
    def submit(self, request: RunRequest) -> Handle:
        """Stage the run's folder in the workdir (lib, the snapshot's missing blobs, spec),
        write a batch script that runs the launcher, and ``sbatch`` it; returns at once."""
        compute = request.compute
        host = self.host(compute)
        workdir = str(compute.get("workdir_path") or compute["workdir"])
        run_dir = f"{workdir}/runs/{request.run_id}"
        options = resources.sbatch_options(
            compute,
            request.node_count,
            request.options,
            max_duration=slurm_time_limit(request.spec),
        )
        # One folder per node (resources.node_dirs).
        folders = resources.node_dirs(run_dir, request.node_count)
        specs = resources.node_specs(request.spec, request.run_id, request.node_count)
        lib, staged = "", []
        try:
            for folder, spec in zip(folders, specs):
                lib = host.stage(replace(request, spec=spec), workdir, folder)
                staged.append(folder)
            directives = cli.sbatch_directives(
                options,
                job_name=f"trainform-{request.run_id}",
                output=f"{run_dir}/{SLURM_LOG}",
                chdir=run_dir,
            )
            launch = resources.launch_line(lib, run_dir, request.node_count, request.options)
            script = "#!/bin/sh\n" + "\n".join(directives) + f"\n{launch}\n"
            host.write_file(f"{run_dir}/{SCRIPT_NAME}", script.encode())
            for folder in folders:
                host.write_file(
                    f"{folder}/status.json",
                    json.dumps({"status": "queued", "host": socket.gethostname()}).encode(),
                )
            argv = cli.sbatch_argv(
                f"{run_dir}/{SCRIPT_NAME}", list(compute.get("extra_sbatch_args") or [])
            )
            code, out, err = host.run(argv)
        except BaseException:
            for folder in staged:
                host.discard_secrets(folder)
            raise
        if code != 0:
            for folder in folders:
                host.discard_secrets(folder)
            raise ProviderError(
                f"{request.address}: sbatch refused the job on {host.where}: {err.strip()[-500:]}",
                address=request.address,
                command="sbatch",
                exit_code=code,
            )
        return {
            "run_dir": run_dir,
            "job_id": cli.parse_sbatch(out),
            **({"node_count": request.node_count} if request.node_count > 1 else {}),
        }

    def _job(self, host: SlurmHost, job_id: str) -> tuple[cli.JobRecord | None, str]:
        """The job as Slurm reports it (squeue, then sacct), or None with why not."""
        code, out, err = host.run(cli.squeue_argv([job_id]))
        if code == 0 and out.strip():
            records = [r for r in cli.parse_squeue(out) if r.job_id == job_id]
            if records:
                return records[0], ""
        elif code != 0 and not cli.invalid_job_id(err):
            raise ProviderError(
                f"squeue exited with {code}: {err.strip()[-500:]}", command="squeue", exit_code=code
            )
        code, out, err = host.run(cli.sacct_argv([job_id]))
        if code != 0 and cli.accounting_disabled(out + err):
            return None, (
                f"Slurm no longer lists job {job_id} and its accounting storage is disabled "
                "(no slurmdbd): the status is the launcher's status.json"
            )
        if code != 0:
            raise ProviderError(
                f"sacct exited with {code}: {err.strip()[-500:]}", command="sacct", exit_code=code
            )
        record = cli.sacct_job(cli.parse_sacct(out), job_id)
        return record, "" if record else f"Slurm knows no job {job_id} any more"

    def status(self, handle: Handle) -> dict[str, Any]:
        """The launcher's status once it records an outcome; before that, Slurm's view: a
        pending job is ``queued`` with Slurm's reason, a job that ended without the launcher
        recording an outcome (cancelled while pending, killed at its time limit) takes the
        status of its Slurm state."""
        host = self.host(handle.get("target") or {})
        folders = self._folders(handle)
        recorded = [host.read_status(folder) for folder in folders]
        if all(r.get("status") in TERMINAL for r in recorded):
            return self._combined(handle, recorded)
        record, why = self._job(host, str(handle["job_id"]))
        # read again after Slurm answered: a launcher may have finished since
        return self._combined(
            handle, [self._node_status(host.read_status(f), record, why) for f in folders]
        )

    @staticmethod
    def _node_status(
        recorded: dict[str, Any], record: cli.JobRecord | None, why: str
    ) -> dict[str, Any]:
        """One node's status: its launcher's once it records an outcome, else the job's."""
        if recorded.get("status") in TERMINAL:
            return recorded
        if record is None:
            return {**recorded, "status": "lost", "message": f"{why}, which records no outcome"}
        status, message = cli.run_status(record)
        if status == "running" and recorded.get("status") == "running":
            return recorded
        if not message.startswith(record.state):  # run_status names some states itself
            message = f"{record.state} ({message})" if message else record.state
        return {**recorded, "status": status, "message": f"Slurm job {record.job_id}: {message}"}

    def _combined(self, handle: Handle, statuses: list[dict[str, Any]]) -> dict[str, Any]:
        """The run's status from its nodes' (see ``multinode.combine``). The job's srun
        already ends the other ranks when one fails (``--kill-on-bad-exit``); a rank failing
        otherwise still stops the job here."""
        if len(statuses) == 1:
            return statuses[0]
        combined, stop_others = multinode.combine([str(r) for r in range(len(statuses))], statuses)
        if stop_others:
            self.cancel(handle)
        return combined

    @staticmethod
    def _folders(handle: Handle) -> list[str]:
        """The run folder of each node, in rank order."""
        return resources.node_dirs(str(handle["run_dir"]), int(handle.get("node_count") or 1))

    def nodes(self, handle: Handle) -> list[str]:
        """One "" per node: which Slurm node has which rank is known once the job runs."""
        return [""] * len(self._folders(handle))

    def logs(self, handle: Handle, offset: int, node: int = 0) -> tuple[bytes, int]:
        folders = self._folders(handle)
        if not 0 <= node < len(folders):
            raise ProviderError(f"the run has {len(folders)} node(s): no rank {node}")
        host = self.host(handle.get("target") or {})
        return host.read_from(f"{folders[node]}/output.log", offset)

    def metrics(self, handle: Handle, offset: int) -> tuple[bytes, int]:
        host = self.host(handle.get("target") or {})
        return host.read_from(f"{handle['run_dir']}/metrics.jsonl", offset)

    def cancel(self, handle: Handle) -> None:
        """``scancel``: Slurm sends SIGTERM to the batch shell (the launcher, which stops its
        run), then SIGKILL after KillWait. Idempotent: a job Slurm has forgotten is done."""
        code, _, err = self.host(handle.get("target") or {}).run(
            cli.scancel_argv([str(handle["job_id"])])
        )
        if code != 0 and not cli.invalid_job_id(err):
            raise ProviderError(
                f"scancel {handle['job_id']} exited with {code}: {err.strip()[-500:]}",
                command="scancel",
                exit_code=code,
            )

    def fetch_outputs(self, handle: Handle, dest: Path) -> None:
        """Rank 0's folder into ``dest``, rank N's into ``dest/nodes/N`` (as ssh pools)."""
        host = self.host(handle.get("target") or {})
        for rank, folder in enumerate(self._folders(handle)):
            host.fetch_run(folder, dest if rank == 0 else dest / "nodes" / str(rank))
