"""The Slurm commands the ``slurm`` compute runs, as argv lists, and parsers of what they print.

Pure functions, no processes and no printing: the provider runs the argv (locally or over SSH,
never through a shell it builds from strings) and hands the output here. Every option used
exists in Slurm 20.11 through 24.x: ``--format``/``--noheader``/``--parsable2``/``--states``,
never ``squeue --only-job-state`` (23.02+) nor ``--json`` (21.08+, plugin-dependent).

Everything a Slurm command prints is treated as hostile: outputs are size-limited, lines are
split on an explicit delimiter, and a line that does not fit the requested format raises
:class:`SlurmOutputError` naming the command and the line instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from trainform.errors import ProviderError

MAX_OUTPUT_CHARS = 8_000_000
"""The most a Slurm command's output may hold before parsing refuses it (a queue of tens of
thousands of jobs fits; a runaway or hostile stream does not)."""

MAX_LINE_CHARS = 20_000

ACCOUNTING_DISABLED = "Slurm accounting storage is disabled"
"""What ``sacct`` prints (on stderr, exit code 1) without ``slurmdbd``: the cue to fall back to
``scontrol show job`` and the launcher's ``status.json``."""

INVALID_JOB_ID = "Invalid job id specified"
"""What ``squeue --jobs`` and ``scontrol show job`` print (stderr, exit code 1) when none of the
asked jobs is known to ``slurmctld`` any more (ended longer than ``MinJobAge`` ago)."""


class SlurmOutputError(ProviderError):
    """A Slurm command printed something that does not have the requested form."""


# --------------------------------------------------------------------------------------------
# shared parsing helpers


def _lines(text: str, command: str) -> list[str]:
    """The non-blank lines of a command's output, refusing oversized output or lines."""
    if len(text) > MAX_OUTPUT_CHARS:
        raise SlurmOutputError(
            f"{command} printed {len(text)} characters, more than the {MAX_OUTPUT_CHARS} "
            "trainform reads",
            command=command,
        )
    lines = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_CHARS:
            raise SlurmOutputError(
                f"{command} printed a line {number} of {len(line)} characters, more than the "
                f"{MAX_LINE_CHARS} trainform reads",
                command=command,
            )
    return lines


def _fields(line: str, count: int, command: str, number: int) -> list[str]:
    """``line`` split on ``|`` into exactly ``count`` fields; any other count is an error
    naming the line (see :func:`_reason_field` for a free-text last field)."""
    parts = line.split("|")
    if len(parts) != count:
        raise SlurmOutputError(
            f"{command} output line {number} has {len(parts)} fields where {count} were "
            f"asked for: {line[:200]!r}",
            command=command,
        )
    return [p.strip() for p in parts]


_DURATION = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?(?:\.\d+)?")
# "INVALID": what Slurm prints for a time it cannot compute (a job whose EndTime was moved).
_NO_LIMIT = {"infinite", "unlimited", "n/a", "none", "partition_limit", "invalid", ""}


def parse_duration(text: str) -> int | None:
    """Seconds in a Slurm time as its commands print it: ``M:SS``, ``H:MM:SS``,
    ``D-HH:MM:SS``, ``D-HH`` or ``D-HH:MM`` (sacct may add ``.micro``). ``infinite``,
    ``UNLIMITED``, ``n/a``, ``Partition_Limit`` and ``INVALID`` mean no limit known: ``None``. Raises
    :class:`SlurmOutputError` for anything else."""
    s = text.strip()
    if s.lower() in _NO_LIMIT:
        return None
    m = _DURATION.fullmatch(s)
    if not m:
        raise SlurmOutputError(f"{s[:40]!r} is not a Slurm time such as 1:00:00 or 2-00:00:00")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    assert a is not None  # the pattern requires the first number
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = a, b or 0, c or 0
    elif c is not None:  # H:MM:SS
        hours, minutes, seconds = a, b or 0, c
    elif b is not None:  # M:SS
        hours, minutes, seconds = 0, a, b
    else:  # a bare number is minutes, as sbatch --time reads it
        hours, minutes, seconds = 0, a, 0
    return (days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def format_time_limit(seconds: float) -> str:
    """A ``--time`` value, ``D-HH:MM:SS``, for a limit in seconds (rounded up to a whole
    second; Slurm itself rounds up to the minute). Raises ValueError for a limit under one
    second."""
    if seconds <= 0:
        raise ValueError(f"a Slurm time limit must be positive, not {seconds}")
    total = int(-(-seconds // 1))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def _optional(value: str) -> str:
    """Slurm's spellings of "nothing" as ''."""
    return (
        "" if value in ("", "(null)", "None", "None assigned", "N/A", "Unknown", "n/a") else value
    )


# --------------------------------------------------------------------------------------------
# version


@dataclass(frozen=True, order=True)
class SlurmVersion:
    """A Slurm release, comparable: ``SlurmVersion(22, 5, 8) >= SlurmVersion(20, 11, 0)``."""

    major: int
    minor: int
    micro: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor:02d}.{self.micro}"


OLDEST_SUPPORTED = SlurmVersion(20, 11, 0)

_VERSION = re.compile(r"slurm(?:-wlm)?\s+(\d{2})\.(\d{1,2})(?:\.(\d+))?", re.IGNORECASE)


def version_argv() -> list[str]:
    """Prints ``slurm 22.05.8`` (upstream) or ``slurm-wlm 22.05.8`` (Debian's build)."""
    return ["sinfo", "--version"]


def parse_version(text: str) -> SlurmVersion:
    """The version in ``sinfo --version``'s output. Raises :class:`SlurmOutputError` when the
    text does not name a Slurm release."""
    m = _VERSION.search(text[:1000])
    if not m:
        raise SlurmOutputError(
            f"'sinfo --version' printed {text.strip()[:100]!r}, not a Slurm version",
            command="sinfo --version",
        )
    return SlurmVersion(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


# --------------------------------------------------------------------------------------------
# partitions

# One line per node and partition (--Node), so CPUs, memory and GRES are each node's own
# figures, not the "2+" minimum sinfo prints for a group of unlike nodes.
_SINFO_FORMAT = "%P|%a|%l|%D|%c|%m|%G|%T|%N"

# Node states (sinfo %T, lower case) in which a node takes no new job.
_UNUSABLE_NODE_STATES = {
    "down",
    "drained",
    "draining",
    "drain",
    "fail",
    "failing",
    "inval",
    "maint",
    "future",
    "unknown",
    "reboot_issued",
    "reboot_requested",
    "powered_down",
    "powering_down",
}


def sinfo_argv(partitions: Sequence[str] = ()) -> list[str]:
    """Every node of every partition (or of ``partitions``), one line each."""
    argv = ["sinfo", "--Node", "--noheader", f"--format={_SINFO_FORMAT}"]
    if partitions:
        argv.append("--partition=" + ",".join(partitions))
    return argv


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of a partition as one sinfo line lists them (one node with ``--Node``)."""

    nodes: str
    count: int
    cpus: int
    memory_mb: int
    gres: tuple[str, ...]
    state: str
    """Lower case, without sinfo's flag suffixes (``*`` not responding, ``~`` powered off,
    ...), which are in ``flags``."""
    flags: str = ""

    @property
    def usable(self) -> bool:
        """Whether the nodes can take a new job now or once the running ones end."""
        return self.state not in _UNUSABLE_NODE_STATES and "*" not in self.flags

    @property
    def gpus(self) -> int:
        """GPUs per node from the ``gpu`` GRES (``gpu:4``, ``gpu:a100:4(S:0-1)``)."""
        return sum(gres_count(g) for g in self.gres if g.split(":", 1)[0] == "gpu")


@dataclass(frozen=True)
class Partition:
    """A partition: its availability, time limit, default marker and its nodes."""

    name: str
    default: bool
    avail: str
    """``up``, ``down``, ``drain`` or ``inact``."""
    time_limit: int | None
    """Seconds; ``None`` for no limit."""
    groups: tuple[NodeGroup, ...] = ()

    @property
    def up(self) -> bool:
        return self.avail == "up"

    @property
    def node_count(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def max_cpus(self) -> int:
        """The most CPUs one node has (0 without nodes)."""
        return max((g.cpus for g in self.groups), default=0)

    @property
    def max_memory_mb(self) -> int:
        return max((g.memory_mb for g in self.groups), default=0)

    @property
    def max_gpus(self) -> int:
        return max((g.gpus for g in self.groups), default=0)

    @property
    def states(self) -> dict[str, int]:
        """Node count per state (``{"idle": 1, "allocated": 1}``)."""
        counts: dict[str, int] = {}
        for g in self.groups:
            counts[g.state] = counts.get(g.state, 0) + g.count
        return counts


def gres_count(gres: str) -> int:
    """The count of one GRES entry: ``gpu:a100:4(S:0-1)`` → 4, ``gpu:a100`` and ``gpu`` → 1."""
    parts = re.sub(r"\(.*\)$", "", gres).split(":")
    return int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1


def _split_gres(text: str) -> tuple[str, ...]:
    """``gpu:2,shard:4`` → ``("gpu:2", "shard:4")``; commas inside ``(S:0,1)`` stay."""
    if _optional(text) == "":
        return ()
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return tuple(p for p in parts if p)


def _number(text: str, what: str, command: str) -> int:
    """An sinfo count such as ``2`` or ``6026+`` (a minimum over unlike nodes)."""
    m = re.fullmatch(r"(\d{1,15})\+?", text)
    if not m:
        raise SlurmOutputError(f"{command} printed {text[:40]!r} as {what}", command=command)
    return int(m.group(1))


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions from :func:`sinfo_argv`'s output, in the order sinfo lists them. The
    default partition (``debug*``) has ``default`` set and its name without the ``*``."""
    command = "sinfo"
    order: list[str] = []
    found: dict[str, Partition] = {}
    for number, line in enumerate(_lines(text, command), 1):
        part, avail, limit, count, cpus, memory, gres, state, nodes = _fields(
            line, 9, command, number
        )
        default = part.endswith("*")
        name = part.rstrip("*")
        m = re.fullmatch(r"([a-z_]+)([^a-z_]*)", state.lower())
        if not name or not m:
            raise SlurmOutputError(f"{command} output line {number} is {line[:200]!r}")
        group = NodeGroup(
            nodes=nodes,
            count=_number(count, "a node count", command),
            cpus=_number(cpus, "a CPU count", command),
            memory_mb=_number(memory, "a memory size", command),
            gres=_split_gres(gres),
            state=m.group(1),
            flags=m.group(2),
        )
        prior = found.get(name)
        if prior is None:
            order.append(name)
            found[name] = Partition(name, default, avail.lower(), parse_duration(limit), (group,))
        else:
            found[name] = Partition(
                name,
                prior.default or default,
                prior.avail,
                prior.time_limit,
                (*prior.groups, group),
            )
    return [found[n] for n in order]


# --------------------------------------------------------------------------------------------
# jobs: records from squeue, sacct and scontrol


@dataclass(frozen=True)
class JobRecord:
    """One job (or, from sacct, one job step) as a Slurm command reports it.

    ``job_id`` is as Slurm prints it: ``12``, ``12_3`` (array task), ``12+0`` (heterogeneous
    component); ``step`` is ``""`` for the job itself and ``batch``, ``extern`` or ``0`` for
    its steps. ``state`` is the base state in upper case (``CANCELLED``, not ``CANCELLED by
    0``); empty strings stand for what Slurm left unset (``None``, ``N/A``, ``Unknown``).
    """

    job_id: str
    state: str
    reason: str = ""
    nodes: str = ""
    step: str = ""
    array_job_id: str = ""
    """The job id Slurm gave an array task (squeue ``%A``), which differs from ``12_3``."""
    exit_code: int | None = None
    signal: int | None = None
    canceled_by: int | None = None
    """The uid that cancelled the job (sacct ``CANCELLED by UID``)."""
    elapsed: int | None = None
    time_limit: int | None = None
    start: str = ""
    end: str = ""
    restarts: int | None = None
    """How often Slurm requeued the job (scontrol ``Restarts``): attempts = restarts + 1."""
    extra: dict[str, str] = field(default_factory=dict, compare=False)


_SQUEUE_FORMAT = "%i|%A|%T|%N|%M|%l|%S|%r"


def squeue_argv(job_ids: Iterable[str]) -> list[str]:
    """The jobs ``job_ids`` in any state ``slurmctld`` still holds (``--states=all``: without
    it squeue leaves out jobs that just ended), one line per array task (``--array``). The
    reason is last since it is free text."""
    ids = ",".join(job_ids)
    if not ids:
        raise ValueError("squeue_argv needs at least one job id")
    return [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        f"--jobs={ids}",
        f"--format={_SQUEUE_FORMAT}",
    ]


def _reason_field(line: str, count: int, command: str, number: int) -> list[str]:
    """Fields of a line whose last field is a free-text reason that may hold ``|``."""
    head = line.split("|", count - 1)
    if len(head) != count:
        return _fields(line, count, command, number)  # raises with the line
    return [p.strip() for p in head]


def parse_squeue(text: str) -> list[JobRecord]:
    """Jobs from :func:`squeue_argv`'s output."""
    records = []
    for number, line in enumerate(_lines(text, "squeue"), 1):
        job_id, array_id, state, nodes, used, limit, start, reason = _reason_field(
            line, 8, "squeue", number
        )
        records.append(
            JobRecord(
                job_id=job_id,
                array_job_id=array_id if array_id != job_id else "",
                state=_base_state(state),
                reason=_optional(reason),
                nodes=_optional(nodes),
                elapsed=parse_duration(used),
                time_limit=parse_duration(limit),
                start=_optional(start),
            )
        )
    return records


SACCT_FIELDS = ("JobID", "State", "ExitCode", "NodeList", "Start", "End", "Elapsed", "Reason")


def sacct_argv(job_ids: Iterable[str]) -> list[str]:
    """Accounting records of ``job_ids`` and their steps, one ``|``-separated line each.
    ``--duplicates`` is left out on purpose: a requeued job's earlier attempts would repeat
    its id; ``scontrol``'s ``Restarts`` counts attempts."""
    ids = ",".join(job_ids)
    if not ids:
        raise ValueError("sacct_argv needs at least one job id")
    return [
        "sacct",
        "--parsable2",
        "--noheader",
        f"--jobs={ids}",
        "--format=" + ",".join(SACCT_FIELDS),
    ]


def accounting_disabled(output: str) -> bool:
    """Whether sacct's output (stdout or stderr) says there is no accounting storage."""
    return ACCOUNTING_DISABLED.lower() in output[:10_000].lower()


def invalid_job_id(output: str) -> bool:
    """Whether squeue's or scontrol's stderr says the asked jobs are unknown."""
    return INVALID_JOB_ID.lower() in output[:10_000].lower()


_STATE = re.compile(r"([A-Z_]+)\+?(?:\s+BY\s+(\d+))?")
_EXIT = re.compile(r"(\d+):(\d+)")


def _base_state(text: str) -> str:
    m = _STATE.fullmatch(text.strip().upper())
    if not m:
        raise SlurmOutputError(f"{text[:60]!r} is not a Slurm job state")
    return m.group(1)


def parse_sacct(text: str) -> list[JobRecord]:
    """Jobs and steps from :func:`sacct_argv`'s output: ``12``, ``12.batch``, ``12.0``,
    ``12_3.extern``, ``12+0``; ``CANCELLED by 1000`` gives ``canceled_by`` 1000; a state
    that an older sacct cut with ``+`` is read without it."""
    records = []
    for number, line in enumerate(_lines(text, "sacct"), 1):
        job, state, code, nodes, start, end, elapsed, reason = _reason_field(
            line, 8, "sacct", number
        )
        job_id, _, step = job.partition(".")
        m = _STATE.fullmatch(state.upper())
        if not job_id or not m:
            raise SlurmOutputError(f"sacct output line {number} is {line[:200]!r}", command="sacct")
        exit_match = _EXIT.fullmatch(code)
        records.append(
            JobRecord(
                job_id=job_id,
                step=step,
                state=m.group(1),
                canceled_by=int(m.group(2)) if m.group(2) else None,
                exit_code=int(exit_match.group(1)) if exit_match else None,
                signal=int(exit_match.group(2)) if exit_match else None,
                nodes=_optional(nodes),
                start=_optional(start),
                end=_optional(end),
                elapsed=parse_duration(elapsed),
                reason=_optional(reason),
            )
        )
    return records


def sacct_job(records: Sequence[JobRecord], job_id: str) -> JobRecord | None:
    """The job-level record of ``job_id`` among :func:`parse_sacct`'s records, or ``None``.
    Some Slurm versions mark only a step ``OUT_OF_MEMORY`` and the job ``FAILED`` or even
    ``COMPLETED``; the job's state then says ``OUT_OF_MEMORY`` too, since that is the cause a
    user needs."""
    job = next((r for r in records if r.job_id == job_id and not r.step), None)
    if job is None:
        return None
    oom = any(r.job_id == job_id and r.step and r.state == "OUT_OF_MEMORY" for r in records)
    if oom and job.state in ("FAILED", "COMPLETED"):
        return replace(job, state="OUT_OF_MEMORY")
    return job


def scontrol_show_job_argv(job_id: str) -> list[str]:
    """One job's full record (``--oneliner`` is left out: the multi-line form keeps
    ``Command=`` and the paths on lines of their own, so spaces in them survive)."""
    return ["scontrol", "show", "job", job_id]


# Keys scontrol prints alone on a line, whose values may hold spaces and "=".
_LINE_KEYS = ("Command", "WorkDir", "StdErr", "StdIn", "StdOut", "Comment", "AdminComment")
_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_/:.()\[\]-]*)=")


def parse_scontrol_pairs(text: str) -> list[dict[str, str]]:
    """``Key=value`` pairs of ``scontrol show`` output, one dict per record (records are
    separated by blank lines). A value runs to the next `` Key=``, so ``JobName=long one``
    keeps its space; a value that itself holds `` word=`` is cut there, except in the keys
    scontrol prints alone on a line (``Command``, ``WorkDir``, ``StdOut``, ...)."""
    _lines(text, "scontrol")  # the size limits
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if current:
                records.append(current)
                current = {}
            continue
        key, sep, rest = line.partition("=")
        if sep and key in _LINE_KEYS:
            current[key] = rest
            continue
        matches = list(_KEY.finditer(line))
        for i, m in enumerate(matches):
            stop = matches[i + 1].start() if i + 1 < len(matches) else len(line)
            current[m.group(1)] = line[m.end() : stop].strip()
    if current:
        records.append(current)
    return records


def parse_scontrol_job(text: str) -> JobRecord:
    """The job in ``scontrol show job ID``'s output (the first record; an array's tasks
    follow as further records). Raises :class:`SlurmOutputError` without ``JobId`` and
    ``JobState``."""
    records = parse_scontrol_pairs(text)
    pairs = records[0] if records else {}
    if "JobId" not in pairs or "JobState" not in pairs:
        raise SlurmOutputError(
            f"'scontrol show job' printed no JobId/JobState: {text.strip()[:200]!r}",
            command="scontrol show job",
        )
    task = pairs.get("ArrayTaskId", "")
    job_id = f"{pairs['ArrayJobId']}_{task}" if task and "ArrayJobId" in pairs else pairs["JobId"]
    exit_match = _EXIT.fullmatch(pairs.get("ExitCode", ""))
    restarts = pairs.get("Restarts", "")
    return JobRecord(
        job_id=job_id,
        array_job_id=pairs["JobId"] if job_id != pairs["JobId"] else "",
        state=_base_state(pairs["JobState"]),
        # scontrol writes a reason's spaces as "_"
        reason=_optional(pairs.get("Reason", "")).replace("_", " "),
        nodes=_optional(pairs.get("NodeList", "")),
        exit_code=int(exit_match.group(1)) if exit_match else None,
        signal=int(exit_match.group(2)) if exit_match else None,
        elapsed=parse_duration(pairs.get("RunTime", "")),
        time_limit=parse_duration(pairs.get("TimeLimit", "")),
        start=_optional(pairs.get("StartTime", "")),
        end=_optional(pairs.get("EndTime", "")),
        restarts=int(restarts) if restarts.isdigit() else None,
        extra=pairs,
    )


# --------------------------------------------------------------------------------------------
# job states → run statuses

_QUEUED = {"PENDING", "CONFIGURING", "REQUEUE_HOLD", "RESV_DEL_HOLD"}
_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}
_SUSPENDED = {"SUSPENDED", "STOPPED"}
_REQUEUED = {"REQUEUED", "REQUEUE_FED"}
_FAILED = {
    "FAILED": "the job failed",
    "OUT_OF_MEMORY": "the job ran out of memory",
    "NODE_FAIL": "a node of the job failed",
    "BOOT_FAIL": "a node of the job failed to boot",
    "DEADLINE": "the job reached its deadline",
    "SPECIAL_EXIT": "the job ended with Slurm's special exit state",
}


def run_status(record: JobRecord, *, requeue: bool = True) -> tuple[str, str]:
    """The trainform run status and message for a Slurm job record.

    PENDING/CONFIGURING → ``queued`` with Slurm's reason; RUNNING/COMPLETING → ``running``;
    COMPLETED → ``completed``; FAILED, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL, DEADLINE →
    ``failed`` naming the state; CANCELLED → ``canceled``; TIMEOUT → ``timed_out``;
    PREEMPTED and REQUEUED → ``queued`` again with a note, unless the job was submitted
    without ``requeue`` (then a PREEMPTED job is over: ``failed``). A state this module does
    not know is reported as ``running`` with a note, so the run is watched rather than ended
    on a guess.
    """
    state = record.state
    reason = record.reason
    if state in _QUEUED:
        if state == "PENDING" and record.restarts:
            return (
                "queued",
                f"requeued by Slurm (attempt {record.restarts + 1}); {reason or 'pending'}",
            )
        return "queued", reason  # none yet: the provider names the state alone
    if state in _RUNNING:
        return "running", ""
    if state in _SUSPENDED:
        return "running", f"suspended by Slurm ({state})"
    if state == "COMPLETED":
        return "completed", ""
    if state in _FAILED:
        code = f", exit code {record.exit_code}" if record.exit_code else ""
        sig = f", signal {record.signal}" if record.signal else ""
        return "failed", f"{state}: {_FAILED[state]}{code}{sig}"
    if state in ("CANCELLED", "REVOKED"):
        who = f" by uid {record.canceled_by}" if record.canceled_by is not None else ""
        return "canceled", f"{state}{who}"
    if state == "TIMEOUT":
        return "timed_out", "TIMEOUT: the job reached its Slurm time limit"
    if state == "PREEMPTED":
        if not requeue:
            return "failed", "PREEMPTED: the job was preempted and is not requeued"
        return "queued", "PREEMPTED: Slurm requeues the job"
    if state in _REQUEUED:
        return "queued", f"{state}: Slurm requeues the job"
    return "running", f"unknown Slurm job state {state[:40]}"


# --------------------------------------------------------------------------------------------
# sbatch


# The signals a job's --signal may name, by Linux number: the launcher (the batch shell) handles
# each one. TERM, INT and HUP stop the run (its grace period, then SIGKILL); the others are
# passed on to the run, which goes on. KILL and STOP cannot be caught, so they are refused.
JOB_SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "USR1": 10, "USR2": 12, "ALRM": 14, "TERM": 15}
DEFAULT_SIGNAL = "B:TERM@60"
SIGNAL_EARLY = 60
"""Seconds before ``--signal``'s own lead that Slurm may already send it (``man sbatch``: its
event handling has that resolution)."""

_SIGNAL = re.compile(r"(?:([RB]{1,2}):)?(?:SIG)?([A-Z0-9]{1,6})(?:@(\d{1,5}))?")


@dataclass(frozen=True)
class JobSignal:
    """A ``--signal`` value, checked: the signal's ``name`` (``TERM``) and how many
    ``seconds`` before the job's time limit Slurm sends it to the batch shell."""

    name: str
    seconds: int
    reservation: bool = False
    """``R:``: also sent when a reservation with ``MaxStartDelay`` ends the job early."""

    def __str__(self) -> str:
        return f"{'RB' if self.reservation else 'B'}:{self.name}@{self.seconds}"


def parse_signal(text: str) -> JobSignal:
    """``[{R|B}:]SIG[@SECONDS]`` as sbatch's ``--signal`` reads it (``B:TERM@60``,
    ``B:USR1@300``, ``B:10``; SECONDS defaults to 60, at most 65535). ``B:`` is required: the
    batch shell is the launcher, which passes the signal to the run; without it Slurm signals
    only job steps. Raises ProviderError naming what is wrong."""
    value = str(text).strip()
    m = _SIGNAL.fullmatch(value.upper())
    if not m:
        raise ProviderError(
            f"signal {value[:40]!r} is not [B:]SIGNAL[@SECONDS], such as {DEFAULT_SIGNAL!r}"
        )
    flags, sig, seconds = m.group(1) or "", m.group(2), int(m.group(3) or 60)
    if "B" not in flags or len(set(flags)) != len(flags):
        raise ProviderError(
            f"signal {value[:40]!r} must start with B: (as in {DEFAULT_SIGNAL!r}): Slurm then "
            "signals the batch shell, the launcher, which passes the signal on to the run"
        )
    numbers = {n: name for name, n in JOB_SIGNALS.items()}
    name = numbers.get(int(sig), "") if sig.isdigit() else sig
    if name not in JOB_SIGNALS:
        raise ProviderError(
            f"signal {value[:40]!r}: {sig} is not one the launcher can pass on to the run "
            f"(one of {', '.join(sorted(JOB_SIGNALS))})"
        )
    if seconds > 65535:
        raise ProviderError(f"signal {value[:40]!r}: at most 65535 seconds before the limit")
    return JobSignal(name, seconds, reservation="R" in flags)


@dataclass(frozen=True)
class SbatchOptions:
    """What a run asks of Slurm. ``mem`` is megabytes (an int) or Slurm's ``16G``/``500M``
    form; ``max_duration`` is seconds; ``signal`` is ``--signal``'s value (``None`` for none)."""

    node_count: int = 1
    ntasks_per_node: int | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: int | str | None = None
    max_duration: float | None = None
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    reservation: str = ""
    exclusive: bool = False
    signal: str | None = DEFAULT_SIGNAL
    requeue: bool = False


_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:@%/=+\-\[\]|&!()*]{1,1000}")
_MEM = re.compile(r"\d{1,12}[KMGT]?", re.IGNORECASE)


def _value(option: str, value: object) -> str:
    """``value`` for a directive, refusing characters sbatch would split or misread."""
    text = str(value)
    if not _SAFE_VALUE.fullmatch(text):
        raise ProviderError(
            f"{option} value {text[:80]!r} holds characters not allowed in an #SBATCH "
            "directive (spaces, quotes, newlines, ...)"
        )
    return text


def _positive(option: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ProviderError(f"{option} must be a whole number of at least 1, not {value!r}")
    return value


def sbatch_directives(
    options: SbatchOptions,
    *,
    job_name: str,
    output: str,
    chdir: str = "",
    array: str = "",
    dependency: str = "",
) -> list[str]:
    """The ``#SBATCH`` lines of a run's batch script. ``output`` is the one log file (stderr
    joins it; ``%a`` in it is an array task's index); ``job_name`` and ``chdir`` are
    trainform's; ``array`` is ``--array``'s value (:func:`array_spec`) and ``dependency``
    ``--dependency``'s (``singleton``). Raises ProviderError naming the option for a value
    Slurm would refuse or misread."""
    lines = [
        f"--job-name={_value('job_name', job_name)}",
        f"--output={_value('output', output)}",
        "--open-mode=append",  # a requeued attempt appends to the log instead of wiping it
    ]
    if chdir:
        lines.append(f"--chdir={_value('chdir', chdir)}")
    if array:
        lines.append(f"--array={_value('array', array)}")
    if dependency:
        lines.append(f"--dependency={_value('dependency', dependency)}")
    lines.append(f"--nodes={_positive('node_count', options.node_count)}")
    for option, number in (
        ("ntasks-per-node", options.ntasks_per_node),
        ("gpus-per-node", options.gpus_per_node),
        ("cpus-per-task", options.cpus_per_task),
    ):
        if _positive(option.replace("-", "_"), number) is not None:
            lines.append(f"--{option}={number}")
    if options.mem is not None:
        mem = str(options.mem)
        if isinstance(options.mem, bool) or not _MEM.fullmatch(mem):
            raise ProviderError(f"mem must be megabytes or a size such as 16G, not {mem[:40]!r}")
        lines.append(f"--mem={mem.upper()}")
    if options.max_duration is not None:
        lines.append(f"--time={format_time_limit(options.max_duration)}")
    for option, text in (
        ("partition", options.partition),
        ("account", options.account),
        ("qos", options.qos),
        ("constraint", options.constraint),
        ("reservation", options.reservation),
    ):
        if text:
            lines.append(f"--{option}={_value(option, text)}")
    if options.exclusive:
        lines.append("--exclusive")
    if options.signal:
        lines.append(f"--signal={parse_signal(options.signal)}")
    lines.append("--requeue" if options.requeue else "--no-requeue")
    return [f"#SBATCH {line}" for line in lines]


# Options trainform sets or relies on; extra_sbatch_args may not carry them. Long names are
# matched with the abbreviations sbatch (getopt_long) accepts: "--out" is "--output".
DENIED_LONG = (
    "--output",
    "--error",
    "--input",
    "--job-name",
    "--chdir",
    "--time",
    "--nodes",
    "--ntasks-per-node",
    "--gpus-per-node",
    "--cpus-per-task",
    "--mem",
    "--partition",
    "--account",
    "--qos",
    "--constraint",
    "--reservation",
    "--exclusive",
    "--signal",
    "--requeue",
    "--no-requeue",
    "--open-mode",
    "--wrap",
    "--parsable",
    "--array",
    "--dependency",
    "--export",
    "--export-file",
    "--test-only",
    "--wait",
    "--help",
    "--usage",
    "--version",
)
DENIED_SHORT = {
    "-o": "--output",
    "-e": "--error",
    "-i": "--input",
    "-J": "--job-name",
    "-D": "--chdir",
    "-t": "--time",
    "-N": "--nodes",
    "-c": "--cpus-per-task",
    "-p": "--partition",
    "-A": "--account",
    "-q": "--qos",
    "-C": "--constraint",
    "-a": "--array",
    "-d": "--dependency",
    "-W": "--wait",
    "-h": "--help",
    "-V": "--version",
}
# sbatch's short options that take no argument, so "-QJ x" still sets -J.
_SHORT_FLAGS = set("hHIkOQsvVW")


def check_extra_sbatch_args(args: Sequence[str]) -> list[str]:
    """``args`` as given, after checking that none sets an option trainform owns. A value
    that starts with ``-`` must be attached (``--comment=-x``). Raises ProviderError naming
    the option and what to use instead."""
    for arg in args:
        if not isinstance(arg, str) or any(c in arg for c in "\n\r\0"):
            raise ProviderError(f"extra_sbatch_args: {str(arg)[:80]!r} is not a one-line string")
        if arg == "--" or not arg.startswith("-"):
            if arg == "--":
                raise ProviderError("extra_sbatch_args: '--' would end sbatch's options")
            continue
        if arg.startswith("--"):
            name = arg.split("=", 1)[0]
            owned = [d for d in DENIED_LONG if d == name or (len(name) > 3 and d.startswith(name))]
            exact = name if name in DENIED_LONG else ""
            if exact or owned:
                raise ProviderError(_owned_message(arg, exact or owned[0]))
            continue
        for ch in arg[1:]:
            if f"-{ch}" in DENIED_SHORT:
                raise ProviderError(_owned_message(arg, DENIED_SHORT[f"-{ch}"]))
            if ch not in _SHORT_FLAGS:
                break  # the rest is this option's argument
    return list(args)


def _owned_message(arg: str, option: str) -> str:
    return (
        f"extra_sbatch_args: {arg[:80]!r} sets {option}, which trainform sets itself; use the "
        "run's or the compute's own attribute (node_count, max_duration, partition, account, "
        "qos, constraint, ...) instead"
    )


def node_tasks_argv(node_count: int, cpus_per_node: int | None = None) -> list[str]:
    """``srun`` inside a ``node_count``-node job, running one task on each node (a launcher
    each; the command follows). ``--kill-on-bad-exit`` ends the other tasks (SIGTERM, then
    SIGKILL after KillWait) when one exits non-zero, so a failed rank leaves no other rank
    waiting at a rendezvous. ``cpus_per_node``: what the job asked per node, given to the one
    task (srun 22.05+ no longer inherits sbatch's ``--cpus-per-task``). Options of Slurm
    20.11-24.x."""
    count = _positive("node_count", node_count)
    argv = ["srun", f"--nodes={count}", f"--ntasks={count}", "--ntasks-per-node=1"]
    if _positive("cpus_per_node", cpus_per_node) is not None:
        argv.append(f"--cpus-per-task={cpus_per_node}")
    return [*argv, "--kill-on-bad-exit=1"]


def sbatch_argv(script: str, extra_args: Sequence[str] = ()) -> list[str]:
    """Submit ``script`` (a path on the submitting host); prints ``JOBID`` or
    ``JOBID;CLUSTER`` (``--parsable``)."""
    return ["sbatch", "--parsable", *check_extra_sbatch_args(extra_args), script]


def parse_sbatch(text: str) -> str:
    """The job id from ``sbatch --parsable``'s output (its last line: sbatch may print
    warnings first)."""
    lines = _lines(text, "sbatch")
    m = re.fullmatch(r"(\d{1,12})(?:;\S+)?", lines[-1].strip()) if lines else None
    if not m:
        raise SlurmOutputError(
            f"sbatch printed {text.strip()[:200]!r}, not a job id", command="sbatch"
        )
    return m.group(1)


def scancel_argv(job_ids: Iterable[str], *, signal: str = "") -> list[str]:
    """Cancel ``job_ids``; with ``signal`` (``TERM``), only send that signal to each job's
    batch shell (``--batch``), the launcher, which stops its run within the run's grace
    period and forwards the signal itself. ``--full`` would also signal the run's processes
    directly, so they would get it twice."""
    ids = list(job_ids)
    if not ids:
        raise ValueError("scancel_argv needs at least one job id")
    argv = ["scancel"]
    if signal:
        argv += ["--batch", f"--signal={_value('signal', signal)}"]
    return argv + ids


def array_spec(count: int, at_once: int | None = None) -> str:
    """``--array``'s value for ``count`` tasks indexed from 0, at most ``at_once`` of them
    running at a time (``0-7%2``). Raises ValueError for a count or limit under 1."""
    if count < 1 or (at_once is not None and at_once < 1):
        raise ValueError(f"an array needs at least one task and limit, not {count}/{at_once}")
    limit = f"%{at_once}" if at_once is not None and at_once < count else ""
    return f"0-{count - 1}{limit}"


# --------------------------------------------------------------------------------------------
# a compute's own jobs: the queue `compute show` lists and the slots max_concurrent_runs uses

_QUEUE_FORMAT = "%i|%j|%T|%M|%l|%D|%P|%r|%Z"


def queue_argv(user: str) -> list[str]:
    """This user's jobs that ``slurmctld`` holds (pending, running, just ended), one line per
    array task; the caller keeps those whose name is its own (``--name`` takes exact names
    only). The working folder is last since it is a path, which may hold ``|``."""
    # --user, which every release has, rather than --me, which older ones lack.
    return [
        "squeue",
        f"--user={checked_user(user)}",
        "--noheader",
        "--array",
        f"--format={_QUEUE_FORMAT}",
    ]


@dataclass(frozen=True)
class QueuedJob:
    """One line of :func:`queue_argv`'s output."""

    job_id: str
    """``12`` or, for an array task, ``12_3``."""
    name: str
    state: str
    elapsed: int | None
    time_limit: int | None
    nodes: int
    partition: str
    reason: str
    workdir: str

    @property
    def array_task(self) -> int | None:
        """The task index of an array task (``12_3`` → 3), else None."""
        _, sep, task = self.job_id.partition("_")
        return int(task) if sep and task.isdigit() else None


def parse_queue(text: str) -> list[QueuedJob]:
    """Jobs from :func:`queue_argv`'s output."""
    jobs = []
    for number, line in enumerate(_lines(text, "squeue"), 1):
        parts = line.split("|", 8)
        if len(parts) != 9:
            _fields(line, 9, "squeue", number)  # raises, naming the line
        job_id, name, state, used, limit, nodes, partition, reason, workdir = (
            p.strip() for p in parts
        )
        if not re.fullmatch(r"\d{1,12}(?:_\d{1,9})?", job_id):
            raise SlurmOutputError(f"squeue printed {job_id[:40]!r} as a job id", command="squeue")
        jobs.append(
            QueuedJob(
                job_id=job_id,
                name=name,
                state=_base_state(state),
                elapsed=parse_duration(used),
                time_limit=parse_duration(limit),
                nodes=_number(nodes, "a node count", "squeue"),
                partition=partition,
                reason=_optional(reason),
                workdir=workdir,
            )
        )
    return jobs


# --------------------------------------------------------------------------------------------
# sacctmgr: the accounts and QoS a user may use

SACCTMGR_UNSUPPORTED = "not running a supported accounting_storage plugin"
"""What ``sacctmgr`` prints (stderr, exit code 1) without ``slurmdbd``: nothing to check."""

ASSOC_FIELDS = ("Cluster", "Account", "User", "Partition", "QOS")


def checked_user(user: str) -> str:
    """``user`` if it is a plain user name a Slurm command can be asked about."""
    if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}", user):
        raise ProviderError(f"{user[:80]!r} is not a user name Slurm can be asked about")
    return user


def sacctmgr_assoc_argv(user: str) -> list[str]:
    """``user``'s associations, one ``|``-separated line each (``-nP``: no header,
    parsable2; these options and fields exist in Slurm 20.11 through 24.x)."""
    checked_user(user)
    return [
        "sacctmgr",
        "-nP",
        "show",
        "assoc",
        f"user={user}",
        "format=" + ",".join(ASSOC_FIELDS),
    ]


def sacctmgr_qos_argv() -> list[str]:
    """Every QoS's name, one a line."""
    return ["sacctmgr", "-nP", "show", "qos", "format=Name"]


def sacctmgr_unsupported(output: str) -> bool:
    """Whether sacctmgr's output says there is no accounting storage (no slurmdbd)."""
    text = output[:10_000].lower()
    return SACCTMGR_UNSUPPORTED in text or accounting_disabled(text)


@dataclass(frozen=True)
class Association:
    """One association: ``account`` on ``cluster`` (and ``partition``, ``""`` for all) for
    ``user``, with the QoS it may use."""

    cluster: str
    account: str
    user: str
    partition: str
    qos: tuple[str, ...]


def parse_sacctmgr_assoc(text: str) -> list[Association]:
    """Associations from :func:`sacctmgr_assoc_argv`'s output."""
    found = []
    for number, line in enumerate(_lines(text, "sacctmgr"), 1):
        cluster, account, user, partition, qos = _fields(line, 5, "sacctmgr", number)
        if not account:
            raise SlurmOutputError(
                f"sacctmgr output line {number} names no account: {line[:200]!r}",
                command="sacctmgr",
            )
        found.append(
            Association(
                cluster, account, user, partition, tuple(q for q in qos.split(",") if q.strip())
            )
        )
    return found


def parse_sacctmgr_qos(text: str) -> list[str]:
    """QoS names from :func:`sacctmgr_qos_argv`'s output, in its order."""
    names = []
    for number, line in enumerate(_lines(text, "sacctmgr"), 1):
        (name,) = _fields(line, 1, "sacctmgr", number)
        names.append(name)
    return names
