"""A Slurm cluster as a compute target (``compute "x" { type = "slurm" }``), through this
machine's Slurm client or a login node's over SSH (``sinfo``, ``sbatch``, ``squeue``,
``scontrol``, ``sacct``, ``sacctmgr``, ``scancel``; see :mod:`hosts`).

A run is one batch job that runs the stdlib launcher every target runs. Its folder is on the
shared file system (``workdir``), so the snapshot's blobs and the lib are copied there, and
logs, metrics, status and outputs are read from there as for a local run. Slurm's own view of
the job decides the status until the launcher records an outcome in ``status.json``:
``squeue`` while it is queued or running, ``scontrol show job`` once it ended (its exit code,
while ``slurmctld`` still holds it), then ``sacct``; without accounting storage a job Slurm
forgot is the launcher's ``status.json`` alone, and the status says so.

Attach records whether the cluster has accounting storage and the user's accounts and QoS
(``sacctmgr``); plan refuses an ``account`` or ``qos`` the user does not have, naming the
known ones, and warns that it cannot check them without accounting storage.

A run's ``slurm { }`` block and node count become ``#SBATCH`` options; a multi-node run
is one job whose ``srun`` starts a launcher per node (see :mod:`slurm_resources`). With
``requeue`` a job Slurm requeues runs again in its folder, each attempt recorded by the
launcher; sweeps may go as one job array (``submit_many``); ``max_concurrent_runs`` is
Slurm's to enforce (``--dependency=singleton`` slots).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shlex
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from trainform.config.schema import Attribute, BlockSchema
from trainform.errors import ProviderError
from trainform.providers import slurm_cli as cli
from trainform.providers import slurm_resources as resources
from trainform.providers.base import (
    BATCH,
    MULTI_NODE,
    RUNS,
    TERMINAL,
    Handle,
    Observed,
    PlanValues,
    Provider,
    ProviderContext,
    ResourceState,
    RunRequest,
)
from trainform.providers.hosts import (
    CommandHost,
    LocalHost,
    SSHHost,
    host_target,
    login_attributes,
    login_problems,
    login_schema,
)
from trainform.providers.ssh import SSHComputeProvider
from trainform.runs import nodes as multinode

SCRIPT_NAME = "job.sbatch"
SLURM_LOG = "slurm.out"  # the batch shell's own output (the launcher writes output.log)
ARRAY_TASKS = "tasks"  # a job array's folder: the run id of each task, one a line


def job_mark(compute: dict[str, Any]) -> str:
    """The prefix of the names of this compute's jobs, ``trainform-`` and a hash of its
    workdir: how ``compute show`` finds them in the queue and how the slots of
    ``max_concurrent_runs`` are named (``trainform-1a2b3c4d-slot0``)."""
    workdir = str(compute.get("workdir_path") or compute.get("workdir") or "")
    return f"trainform-{hashlib.sha256(workdir.encode()).hexdigest()[:8]}"


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


def scheduler_signal(compute: dict[str, Any]) -> dict[str, Any]:
    """The launcher spec's ``scheduler_signal`` for a compute's ``signal``: which signal Slurm
    sends before the time limit (the launcher passes one that is not a stop signal on to the
    run), and within how many seconds of the limit a stop signal means the run timed out
    (the lead, plus the minute Slurm may send it early, plus 30 s of slack)."""
    sig = cli.parse_signal(str(compute.get("signal") or cli.DEFAULT_SIGNAL))
    return {"scheduler_signal": {"name": sig.name, "within": sig.seconds + cli.SIGNAL_EARLY + 30}}


def slurm_env(attrs: dict[str, Any]) -> dict[str, str]:
    """``SLURM_CONF`` when the compute names a slurm.conf: Slurm's commands read it."""
    conf = attrs.get("slurm_conf")
    return {"SLURM_CONF": str(conf)} if conf else {}


def slurm_user(attrs: dict[str, Any]) -> str:
    """The user whose jobs these are: the login node's user, else this process's user."""
    login = attrs.get("login")
    if isinstance(login, str) and "@" in login:
        return login.rpartition("@")[0]
    return pwd.getpwuid(os.geteuid()).pw_name


def accounting_facts(host: CommandHost, user: str) -> dict[str, Any]:
    """What attach records about accounting: ``accounting`` (whether the cluster has
    accounting storage, slurmdbd), and ``user``'s ``accounts`` and ``qos`` (sorted; ``None``
    when unknown: no accounting, or sacctmgr failed, ``accounting_error`` then says why).
    One ``sacctmgr`` call, on ``host``."""
    code, out, err = host.run(cli.sacctmgr_assoc_argv(user))
    if code != 0 and cli.sacctmgr_unsupported(out + err):
        return {"accounting": False, "user": user, "accounts": None, "qos": None}
    if code != 0:
        return {
            "accounting": True,
            "user": user,
            "accounts": None,
            "qos": None,
            "accounting_error": f"sacctmgr exited with {code} on {host.where}: "
            f"{err.strip()[-300:]}",
        }
    assocs = cli.parse_sacctmgr_assoc(out)
    return {
        "accounting": True,
        "user": user,
        "accounts": sorted({a.account for a in assocs}),
        "qos": sorted({q for a in assocs for q in a.qos}),
    }


def account_problems(facts: dict[str, Any], account: str, qos: str) -> tuple[list[str], list[str]]:
    """Refusals and warnings for a job's ``account`` and ``qos`` (``""``: not set) given
    :func:`accounting_facts`: one that is not the user's is refused, naming the known ones;
    without accounting storage (or when sacctmgr failed) each set one is a warning that it
    cannot be checked."""
    problems: list[str] = []
    warnings: list[str] = []
    for kind, value, known in (
        ("account", account, facts.get("accounts")),
        ("qos", qos, facts.get("qos")),
    ):
        if not value:
            continue
        if not facts.get("accounting"):
            warnings.append(f"cannot check {kind} {value!r} (no accounting storage)")
        elif not isinstance(known, list):
            why = facts.get("accounting_error") or "sacctmgr did not answer"
            warnings.append(f"cannot check {kind} {value!r} ({why})")
        elif value not in known:
            problems.append(
                f"unknown {kind} {value!r} for user {facts.get('user')!r} on this Slurm "
                f"cluster (known: {', '.join(known) or 'none'})"
            )
    return problems, warnings


CANCEL_MARGIN = 10.0
"""Seconds past the run's grace period that a cancel waits for the launcher to end the job
before a plain ``scancel`` ends it."""


def with_attempts(status: dict[str, Any]) -> dict[str, Any]:
    """``status`` with ``attempts``, every attempt of a run Slurm requeued (see
    :func:`launcher.all_attempts`), when it had more than one."""
    from trainform.runs.launcher import all_attempts

    attempts = all_attempts(status)
    return {**status, "attempts": attempts} if attempts else status


def current_attempt(recorded: dict[str, Any], attempt: int | None) -> dict[str, Any]:
    """A node's status while Slurm is at ``attempt`` (``None``: unknown): what its folder
    holds, unless that is from an earlier attempt (Slurm requeued the job and its launcher
    has not started again yet), then a ``queued`` status listing the ended attempts, so that
    an earlier attempt's outcome is never taken for the run's."""
    from trainform.runs.launcher import ended_attempts

    if attempt is None or attempt <= (recorded.get("attempt") or 1):
        return recorded
    return {
        "status": "queued",
        "created": recorded.get("created"),
        "attempt": attempt,
        "attempts": ended_attempts(recorded, attempt),
    }


def _active(record: cli.JobRecord) -> bool:
    """Whether Slurm still queues or runs the job (squeue's record then says it all)."""
    return cli.run_status(record)[0] in ("queued", "running")


class SlurmComputeProvider(Provider):
    """Runs work as Slurm batch jobs submitted with this machine's Slurm client. Attaching
    reads the cluster's version and partitions; nothing is created, so detaching removes
    nothing."""

    name = "slurm"
    kind = "compute"
    capabilities = frozenset({RUNS, BATCH, MULTI_NODE})
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
            "requeue": Attribute(
                "bool",
                default=False,
                description="Let Slurm requeue a job that is preempted or whose node fails "
                "(--requeue): it runs again in the same run folder, and the run records each "
                "attempt.",
            ),
            "signal": Attribute(
                default=cli.DEFAULT_SIGNAL,
                description="What Slurm sends the launcher before the job's time limit, and "
                "how long before (--signal, B:SIGNAL[@SECONDS]): TERM stops the run within its "
                "grace period (timed_out); another signal, such as USR1, is passed on to it.",
            ),
            "extra_sbatch_args": Attribute(
                "list(string)",
                default=[],
                description="More sbatch options (not ones trainform sets itself).",
            ),
            "facts": Attribute(
                "map",
                computed=True,
                description="Slurm's version, the partitions, whether there is accounting "
                "storage, and the user's accounts and QoS.",
            ),
            "workdir_path": Attribute(computed=True, description="Absolute path of the workdir."),
            **login_schema(
                "login",
                'A login node, "user@host" or "user@host:port", that runs the Slurm commands '
                "and sees the workdir, reached over SSH with the ssh compute's options and "
                "host-key rules (default: this machine's Slurm client).",
            ),
            "slurm_conf": Attribute(
                description="Path of the cluster's slurm.conf on the machine that runs the "
                "Slurm commands (SLURM_CONF; default: Slurm's own)."
            ),
        },
        description="A Slurm cluster reached through this machine's Slurm client.",
    )

    # -- validation and lifecycle
    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        problems = login_problems(self._ssh, address, desired)
        n = desired.get("max_concurrent_runs")
        if isinstance(n, (int, float)) and n < 1:
            problems.append("max_concurrent_runs must be at least 1")
        workdir = desired.get("workdir")
        if isinstance(workdir, str) and not os.path.isabs(workdir):
            problems.append(
                f"workdir {workdir!r} must be an absolute path on the shared file system"
            )
        conf = desired.get("slurm_conf")
        if isinstance(conf, str) and not os.path.isabs(conf):
            problems.append(f"slurm_conf {conf!r} must be an absolute path")
        signal = desired.get("signal")
        if isinstance(signal, str):
            try:
                cli.parse_signal(signal)
            except ProviderError as exc:
                problems.append(str(exc))
        extra = desired.get("extra_sbatch_args")
        if isinstance(extra, list):
            try:
                cli.check_extra_sbatch_args(extra)
            except ProviderError as exc:
                problems.append(str(exc))
        return problems

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        # Reaches login nodes: its connections, credentials and log streams are reused.
        self._ssh = SSHComputeProvider(context)

    def host(self, attrs: dict[str, Any]) -> CommandHost:
        """Where this compute's Slurm commands run and its workdir is reached: the login node
        when ``login`` is set, else this machine (``attrs``: a compute's attributes, with
        the ``host_keys`` to pin, or a run handle's ``target``)."""
        if attrs.get("login"):
            return SSHHost(self._ssh, attrs, env=slurm_env(attrs))
        return LocalHost(
            slurm_env(attrs), "install the Slurm client (Debian: slurm-client) or set login"
        )

    def remember(self, address: str, desired: dict[str, Any]) -> None:
        """Keeps the login node's password or passphrase in this process's memory."""
        if desired.get("login"):
            self._ssh.remember(address, login_attributes(desired)[1])

    def _partitions(self, host: CommandHost) -> list[cli.Partition]:
        return cli.parse_sinfo(host.checked(cli.sinfo_argv()))

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        """Refuses, at plan time, a partition that does not exist or takes no jobs. A login
        node is reached with the host keys attach pinned."""
        pins = prior.computed.get("host_keys") if prior is not None else None
        problem = partition_problem(
            self._partitions(self.host({**desired, "host_keys": pins or {}})),
            str(desired.get("partition") or ""),
        )
        if problem:
            raise ProviderError(problem, address=address)
        account, qos = str(desired.get("account") or ""), str(desired.get("qos") or "")
        warnings: list[str] = []
        if account or qos:  # asked now, not from the facts: an association may be new
            host = self.host({**desired, "host_keys": pins or {}})
            refused, warnings = account_problems(
                accounting_facts(host, slurm_user(desired)), account, qos
            )
            if refused:
                raise ProviderError("; ".join(refused), address=address)
        if desired.get("login"):  # the ssh compute's advice (keys over passwords)
            ssh = self._ssh.plan_values(address, login_attributes(desired)[1], None)
            return replace(ssh, warnings=(*ssh.warnings, *warnings))
        return PlanValues(warnings=tuple(warnings))

    def run_problems(
        self, compute: dict[str, Any], node_count: int, options: dict[str, Any] | None = None
    ) -> list[str]:
        """The run's ``slurm { }`` values, a request larger than any node of its partition
        and an ``account`` or ``qos`` there that the user does not have (from the recorded
        facts; see :func:`resources.size_problems` and :func:`account_problems`)."""
        options = options or {}
        facts = compute.get("facts")
        refused, _ = account_problems(  # unchecked ones: the compute's plan warns of its own
            facts if isinstance(facts, dict) else {},
            str(options.get("account") or ""),
            str(options.get("qos") or ""),
        )
        return resources.option_problems(options) or [
            *resources.size_problems(compute, node_count, options),
            *refused,
        ]

    def _attach(self, attrs: dict[str, Any], pinned: dict[str, str]) -> Observed:
        """Facts, the workdir and the host keys verified (``pinned``: those recorded)."""
        host = self.host({**attrs, "host_keys": pinned})
        version = cli.parse_version(host.checked(cli.version_argv()))
        partitions = self._partitions(host)
        workdir = host.prepare_workdir(str(attrs["workdir"]))
        return {
            "facts": {
                "slurm_version": str(version),
                "partitions": {p.name: partition_facts(p) for p in partitions},
                **accounting_facts(host, slurm_user(attrs)),
            },
            "workdir_path": workdir,
            "host_keys": host.host_keys(),
        }

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return self._attach(desired, {})

    def read(self, resource: ResourceState) -> Observed | None:
        pinned = resource.computed.get("host_keys") or {}
        return {**resource.computed, **self._attach(resource.attributes, pinned)}

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        pinned = prior.computed.get("host_keys") or {}
        return {**prior.computed, **self._attach(desired, pinned)}

    def delete(self, prior: ResourceState) -> None:
        return None  # detaching removes nothing from the cluster or the shared folder

    def describe(self, resource: ResourceState) -> dict[str, Any]:
        """What ``compute show`` prints, read live (one ``sinfo``, one ``squeue``): the
        partitions; the queue of this compute's jobs (named with :func:`job_mark`) with the
        run each one is and why it waits; the nodes. Changes nothing."""
        attrs = {**resource.attributes, **resource.computed}
        host = self.host(attrs)  # a login node with the host keys attach pinned
        partitions = self._partitions(host)
        mark = f"{job_mark(attrs)}-"
        queue = cli.parse_queue(host.checked(cli.queue_argv(slurm_user(attrs))))
        workdir = str(attrs.get("workdir_path") or attrs.get("workdir") or "")
        arrays: dict[str, list[str]] = {}

        def run_of(job: cli.QueuedJob) -> str:
            folder, _, name = job.workdir.rpartition("/")
            if folder == f"{workdir}/runs":
                return name
            if folder != f"{workdir}/arrays" or job.array_task is None:
                return ""
            if job.workdir not in arrays:
                data, _ = host.read_from(f"{job.workdir}/{ARRAY_TASKS}", 0, 1 << 20)
                arrays[job.workdir] = data.decode(errors="replace").splitlines()
            tasks = arrays[job.workdir]
            return tasks[job.array_task][:200] if job.array_task < len(tasks) else ""

        nodes: dict[str, dict[str, Any]] = {}
        for partition in partitions:
            for group in partition.groups:
                node = nodes.setdefault(
                    group.nodes,
                    {
                        "name": group.nodes,
                        "state": group.state + group.flags,
                        "cpus": group.cpus,
                        "memory_mb": group.memory_mb,
                        "gres": list(group.gres),
                        "partitions": [],
                    },
                )
                node["partitions"].append(partition.name)
        return {
            "slurm_version": (resource.computed.get("facts") or {}).get("slurm_version"),
            "partitions": [{"name": p.name, **partition_facts(p)} for p in partitions],
            "jobs": [
                {
                    "job_id": job.job_id,
                    "run_id": run_of(job),
                    "name": job.name,
                    "state": job.state,
                    "reason": job.reason,
                    "elapsed": job.elapsed,
                    "time_limit": job.time_limit,
                    "partition": job.partition,
                    "nodes": job.nodes,
                }
                for job in queue
                if job.name.startswith(mark)
            ],
            "nodes": sorted(nodes.values(), key=lambda n: n["name"]),
        }

    # -- running work
    def submit(self, request: RunRequest) -> Handle:
        """Stage the run's folder in the workdir (lib, the snapshot's missing blobs, spec),
        write a batch script that runs the launcher, and ``sbatch`` it; returns at once.
        Under ``max_concurrent_runs`` the job takes one of the compute's slots (see
        :meth:`_slot`), so Slurm itself holds it back while the slot is busy."""
        compute = request.compute
        host = self.host(compute)
        mark = job_mark(compute)
        limit = compute.get("max_concurrent_runs")
        if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit >= 1:
            name = f"{mark}-slot{self._slot(host, slurm_user(compute), mark, int(limit))}"
            run_dir = self._stage(request, host, job_name=name, dependency="singleton")
        else:
            run_dir = self._stage(request, host, job_name=f"{mark}-{request.run_id}")
        folders = resources.node_dirs(run_dir, request.node_count)
        job_id = self._sbatch(request, host, f"{run_dir}/{SCRIPT_NAME}", folders)
        # target: how a later process reaches the same host (no password or passphrase).
        return {
            "run_dir": run_dir,
            "job_id": job_id,
            "target": host_target(compute),
            "upload": host.upload,
            "requeue": bool(compute.get("requeue")),
            **({"node_count": request.node_count} if request.node_count > 1 else {}),
        }

    def _stage(
        self, request: RunRequest, host: CommandHost, *, job_name: str, dependency: str = ""
    ) -> str:
        """Create the run's folder with its spec, blobs, lib, batch script and a ``queued``
        status; returns the folder. The script also runs as one task of a job array (its
        ``#SBATCH`` lines are then comments). Secrets are discarded if it fails."""
        compute = request.compute
        workdir = str(compute.get("workdir_path") or compute["workdir"])
        run_dir = f"{workdir}/runs/{request.run_id}"
        options = self._sbatch_options(request)
        # Slurm throttles this compute's runs (submit), so the launcher gets no slots to
        # wait for: a job waiting for one would hold its allocation idle.
        unthrottled = replace(
            request,
            compute={k: v for k, v in compute.items() if k != "max_concurrent_runs"},
        )
        # One folder per node (resources.node_dirs); the first stage sends the files.
        folders = resources.node_dirs(run_dir, request.node_count)
        specs = resources.node_specs(
            {
                **request.spec,
                **scheduler_signal(compute),
                # A requeued job's next attempt needs the secret values again: they stay
                # (0600, in the 0700 runs folder) until the run is collected.
                "keep_secrets": bool(compute.get("requeue")),
            },
            request.run_id,
            request.node_count,
        )
        lib, upload, staged = "", None, []
        try:
            for folder, spec in zip(folders, specs):
                lib = host.stage(replace(unthrottled, spec=spec), workdir, folder)
                staged.append(folder)
                upload = upload or host.upload
            host.upload = upload
            directives = cli.sbatch_directives(
                options,
                job_name=job_name,
                output=f"{run_dir}/{SLURM_LOG}",
                chdir=run_dir,
                dependency=dependency,
            )
            launch = resources.launch_line(lib, run_dir, request.node_count, request.options)
            script = "#!/bin/sh\n" + "\n".join(directives) + f"\n{launch}\n"
            host.write_file(f"{run_dir}/{SCRIPT_NAME}", script.encode())
            for folder in folders:
                host.write_file(
                    f"{folder}/status.json",
                    json.dumps({"status": "queued", "host": socket.gethostname()}).encode(),
                )
        except BaseException:
            for folder in staged:
                host.discard_secrets(folder)
            raise
        return run_dir

    def _sbatch_options(self, request: RunRequest) -> cli.SbatchOptions:
        """What a run's job asks of Slurm, from its compute and launcher spec."""
        options = resources.sbatch_options(
            request.compute,
            request.node_count,
            request.options,
            max_duration=slurm_time_limit(request.spec),
        )
        return replace(
            options,
            requeue=bool(request.compute.get("requeue")),
            signal=str(request.compute.get("signal") or cli.DEFAULT_SIGNAL),
        )

    def _sbatch(
        self, request: RunRequest, host: CommandHost, script: str, run_dirs: list[str]
    ) -> str:
        """``sbatch`` a staged script; the job id. If Slurm refuses it, the secrets of the
        runs in ``run_dirs`` are discarded and ProviderError says why."""
        try:
            argv = cli.sbatch_argv(script, list(request.compute.get("extra_sbatch_args") or []))
            code, out, err = host.run(argv)
        except BaseException:
            for run_dir in run_dirs:
                host.discard_secrets(run_dir)
            raise
        if code != 0:
            for run_dir in run_dirs:
                host.discard_secrets(run_dir)
            raise ProviderError(
                f"{request.address}: sbatch refused the job on {host.where}: {err.strip()[-500:]}",
                address=request.address,
                command="sbatch",
                exit_code=code,
            )
        return cli.parse_sbatch(out)

    def _slot(self, host: CommandHost, user: str, mark: str, count: int) -> int:
        """The slot (0..count-1) of this compute with the fewest of this user's jobs queued
        or running, read in one ``squeue``. Jobs of one slot share a job name and
        ``--dependency=singleton``, so Slurm runs at most one of them at a time and at most
        ``count`` of this compute's jobs in all; the others wait, PENDING (Dependency).
        Two submissions choosing at once may pick the same slot: the limit still holds."""
        load = [0] * count
        prefix = f"{mark}-slot"
        for job in cli.parse_queue(host.checked(cli.queue_argv(user))):
            k = job.name[len(prefix) :] if job.name.startswith(prefix) else ""
            if k.isdigit() and int(k) < count:
                load[int(k)] += 1
        return load.index(min(load))

    def submit_many(self, requests: list[RunRequest], at_once: int | None = None) -> list[Handle]:
        """Submit runs of this compute as ONE job array: each run's folder is staged as
        :meth:`submit` stages it, then one ``sbatch --array=0-(N-1)%M`` whose task ``i``
        runs the batch script of ``requests[i]`` (``SLURM_ARRAY_TASK_ID`` picks the folder).
        ``M`` is the smaller of ``at_once`` and the compute's ``max_concurrent_runs``. The
        handles are per run (``JOBID_TASK``), so status, logs and cancel work per run."""
        if not requests:
            return []
        first = requests[0]
        compute = first.compute
        host = self.host(compute)
        mark = job_mark(compute)
        if any(r.node_count > 1 for r in requests):
            raise ProviderError(f"{first.address}: a job array runs single-node runs only")
        limits = [at_once, compute.get("max_concurrent_runs")]
        limit = min(
            (int(n) for n in limits if isinstance(n, (int, float)) and n >= 1), default=None
        )
        workdir = str(compute.get("workdir_path") or compute["workdir"])
        run_dirs: list[str] = []
        try:
            for request in requests:
                run_dirs.append(self._stage(request, host, job_name=f"{mark}-{request.run_id}"))
            array_dir = f"{workdir}/arrays/{first.run_id}"
            host.prepare_workdir(array_dir)
            host.write_file(
                f"{array_dir}/{ARRAY_TASKS}", "".join(f"{r.run_id}\n" for r in requests).encode()
            )
            directives = cli.sbatch_directives(
                self._sbatch_options(first),
                job_name=f"{mark}-array",
                output=f"{array_dir}/slurm-%a.out",
                chdir=array_dir,
                array=cli.array_spec(len(requests), limit),
            )
            # Task i runs request i's own batch script (its #SBATCH lines are comments to sh).
            arms = [
                f"  {i}) cd {shlex.quote(d)} && exec /bin/sh {shlex.quote(f'{d}/{SCRIPT_NAME}')} ;;"
                for i, d in enumerate(run_dirs)
            ]
            script = "\n".join(
                [
                    "#!/bin/sh",
                    *directives,
                    'case "$SLURM_ARRAY_TASK_ID" in',
                    *arms,
                    '  *) echo "trainform: no run for task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;',
                    "esac\n",
                ]
            )
            host.write_file(f"{array_dir}/{SCRIPT_NAME}", script.encode())
        except BaseException:
            for run_dir in run_dirs:
                host.discard_secrets(run_dir)
            raise
        job_id = self._sbatch(first, host, f"{array_dir}/{SCRIPT_NAME}", run_dirs)
        return [
            {
                "run_dir": d,
                "job_id": f"{job_id}_{i}",
                "array_job_id": job_id,
                "array_task": i,
                "target": host_target(compute),
                "upload": host.upload,
                "requeue": bool(compute.get("requeue")),
            }
            for i, d in enumerate(run_dirs)
        ]

    def _squeue(self, host: CommandHost, job_ids: list[str]) -> dict[str, cli.JobRecord]:
        """The jobs of ``job_ids`` slurmctld still holds (one squeue): queued, running, and
        ended ones until MinJobAge."""
        code, out, err = host.run(cli.squeue_argv(job_ids))
        if code != 0 and not cli.invalid_job_id(err):
            raise ProviderError(
                f"squeue exited with {code} on {host.where}: {err.strip()[-500:]}",
                command="squeue",
                exit_code=code,
            )
        wanted = set(job_ids)
        return {
            r.job_id: r for r in cli.parse_squeue(out if code == 0 else "") if r.job_id in wanted
        }

    def _accounted(
        self, host: CommandHost, job_ids: list[str], listed: dict[str, cli.JobRecord]
    ) -> dict[str, tuple[cli.JobRecord | None, str]]:
        """Ended or forgotten jobs from accounting (one sacct); without accounting storage,
        squeue's ``listed`` record where there is one, else None with why."""
        code, out, err = host.run(cli.sacct_argv(job_ids))
        if code != 0 and cli.accounting_disabled(out + err):
            why = (
                "Slurm no longer lists job {} and its accounting storage is disabled "
                "(no slurmdbd): the status is the launcher's status.json"
            )
            return {i: (listed[i], "") if i in listed else (None, why.format(i)) for i in job_ids}
        if code != 0:
            raise ProviderError(
                f"sacct exited with {code} on {host.where}: {err.strip()[-500:]}",
                command="sacct",
                exit_code=code,
            )
        records = cli.parse_sacct(out)
        found: dict[str, tuple[cli.JobRecord | None, str]] = {}
        for i in job_ids:
            record = cli.sacct_job(records, i) or listed.get(i)
            found[i] = (record, "" if record else f"Slurm knows no job {i} any more")
        return found

    def jobs(
        self, host: CommandHost, job_ids: list[str]
    ) -> dict[str, tuple[cli.JobRecord | None, str]]:
        """Slurm's view of many jobs at once, for callers that poll many runs: one squeue
        for all of them, then one sacct for those that are no longer queued or running.
        Each id maps to its record, or None with why Slurm cannot say (as :meth:`_job`)."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        listed = self._squeue(host, ids)
        found: dict[str, tuple[cli.JobRecord | None, str]] = {
            i: (r, "") for i, r in listed.items() if _active(r)
        }
        rest = [i for i in ids if i not in found]
        if rest:
            found.update(self._accounted(host, rest, listed))
        return found

    def _job(self, host: CommandHost, job_id: str) -> tuple[cli.JobRecord | None, str]:
        """The job as Slurm reports it, or None with why not: squeue while it is queued or
        running; once it ended, ``scontrol show job`` while slurmctld still holds it (until
        MinJobAge; it has the exit code, also without accounting), then sacct."""
        listed = self._squeue(host, [job_id])
        record = listed.get(job_id)
        if record is not None and _active(record):
            return record, ""
        if record is not None:
            code, out, err = host.run(cli.scontrol_show_job_argv(job_id))
            if code == 0:
                return cli.parse_scontrol_job(out), ""
            if not cli.invalid_job_id(err):  # else it was purged since squeue: on to sacct
                raise ProviderError(
                    f"scontrol show job exited with {code} on {host.where}: {err.strip()[-500:]}",
                    command="scontrol",
                    exit_code=code,
                )
        return self._accounted(host, [job_id], listed)[job_id]

    def status(self, handle: Handle) -> dict[str, Any]:
        """The launcher's status once it records an outcome; before that, Slurm's view: a
        pending job is ``queued`` with Slurm's reason, a job that ended without the launcher
        recording an outcome (cancelled while pending, killed at its time limit) takes the
        status of its Slurm state."""
        host = self.host(handle.get("target") or {})
        folders = self._folders(handle)
        recorded = [host.read_status(folder) for folder in folders]
        # A launcher records the SIGTERM Slurm sends at the time limit as "canceled": ask Slurm.
        # A requeued job's folder may still hold the outcome of an earlier attempt: ask Slurm.
        if (
            all(r.get("status") in TERMINAL for r in recorded)
            and not any(r.get("status") == "canceled" for r in recorded)
            and not handle.get("requeue")
        ):
            return self._combined(handle, [with_attempts(r) for r in recorded])
        try:
            record, why = self._job(host, str(handle["job_id"]))
        except ProviderError as exc:
            # slurmctld not answering (restarted, failing over) ends no run: one its launchers
            # report running keeps that status until Slurm answers again.
            if not all(r.get("status") == "running" for r in recorded):
                raise
            kept = self._combined(handle, [with_attempts(r) for r in recorded])
            return {**kept, "message": f"as its launcher recorded; Slurm did not answer: {exc}"}
        attempt = self._slurm_attempt(host, handle, record)
        # read again after Slurm answered: a launcher may have finished since
        return self._combined(
            handle,
            [
                with_attempts(
                    self._node_status(current_attempt(host.read_status(f), attempt), record, why)
                )
                for f in folders
            ],
        )

    def _slurm_attempt(
        self, host: CommandHost, handle: Handle, record: cli.JobRecord | None
    ) -> int | None:
        """The attempt Slurm is at with a requeue job it still queues or runs (``Restarts``
        + 1, from ``scontrol show job``); ``None`` for other jobs."""
        if not handle.get("requeue") or record is None or not _active(record):
            return None
        code, out, _ = host.run(cli.scontrol_show_job_argv(str(handle["job_id"])))
        restarts = cli.parse_scontrol_job(out).restarts if code == 0 else None
        return None if restarts is None else restarts + 1

    @staticmethod
    def _node_status(
        recorded: dict[str, Any], record: cli.JobRecord | None, why: str
    ) -> dict[str, Any]:
        """One node's status: its launcher's once it records an outcome, else the job's; but
        a run the launcher saw stopped by a signal takes the job's end when Slurm ended it
        (TIMEOUT, NODE_FAIL, ...) rather than a user."""
        # While the job is COMPLETING (Slurm's flag hides its end state), it is still running.
        slurm_ended = (
            recorded.get("status") == "canceled"
            and record is not None
            and record.state != "FAILED"  # the launcher's own exit code after a cancel
            and cli.run_status(record)[0] in ("timed_out", "failed", "queued", "running")
        )
        if recorded.get("status") in TERMINAL and not slurm_ended:
            return recorded
        if record is None:
            return {**recorded, "status": "lost", "message": f"{why}, which records no outcome"}
        attempt = recorded.get("attempt")
        if isinstance(attempt, int) and attempt > 1 and not record.restarts:
            record = replace(record, restarts=attempt - 1)  # squeue does not print Restarts
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
        """Stop the run's job. A job whose launcher runs gets ``scancel --batch --signal=TERM``:
        the launcher stops the run within the run's grace period (SIGTERM to its processes,
        SIGKILL after the grace) and records ``canceled``; if the job is still there after
        the grace period and a margin, a plain ``scancel`` ends it. Any other job (pending,
        or not started its launcher yet) gets a plain ``scancel`` at once. Blocks up to the
        grace period plus :data:`CANCEL_MARGIN` seconds. Idempotent: a job that ended or
        that Slurm has forgotten is done."""
        host = self.host(handle.get("target") or {})
        job_id = str(handle["job_id"])
        record = self._squeue(host, [job_id]).get(job_id)
        if record is None or not _active(record):
            return
        folders = self._folders(handle)
        launched = any(
            host.read_status(f).get("status") in ("preparing", "running") for f in folders
        )
        if cli.run_status(record)[0] == "running" and launched:
            self._scancel(host, job_id, signal="TERM")
            spec = json.loads(host.read_from(f"{folders[0]}/spec.json", 0)[0] or b"{}")
            grace = spec.get("grace_seconds") if isinstance(spec, dict) else None
            grace = grace if isinstance(grace, (int, float)) and grace >= 0 else 10.0
            deadline = time.monotonic() + float(grace) + CANCEL_MARGIN
            while time.monotonic() < deadline:
                time.sleep(0.5)
                record = self._squeue(host, [job_id]).get(job_id)
                if record is None or cli.run_status(record)[0] != "running":
                    return  # ended, or ending (COMPLETING is "running" still)
        self._scancel(host, job_id)

    def _scancel(self, host: CommandHost, job_id: str, signal: str = "") -> None:
        code, _, err = host.run(cli.scancel_argv([job_id], signal=signal))
        if code != 0 and not cli.invalid_job_id(err):
            raise ProviderError(
                f"scancel {job_id} exited with {code} on {host.where}: {err.strip()[-500:]}",
                command="scancel",
                exit_code=code,
            )

    def fetch_outputs(self, handle: Handle, dest: Path) -> None:
        """Rank 0's folder into ``dest``, rank N's into ``dest/nodes/N`` (as ssh pools)."""
        host = self.host(handle.get("target") or {})
        for rank, folder in enumerate(self._folders(handle)):
            host.fetch_run(folder, dest if rank == 0 else dest / "nodes" / str(rank))
