"""The provider contract.

A provider manages one kind of resource (``workspace``, ``environment``) or one compute type
(``compute`` blocks with ``type = "local"``, ``"ssh"``, ...). It is a class registered under the
entry-point group ``trainform.providers``; built-in providers are registered the same way as
third-party ones. Heavy SDKs must be imported inside methods, never at module level, so that
``trainform --help`` stays fast and a missing extra disables only that provider.

Providers never print and never prompt. Every error they raise derives from
:class:`trainform.errors.TrainformError`; SDK exceptions are translated into
:class:`trainform.errors.ProviderError` (with address, host, command, exit code, stderr tail)
at the provider boundary.

Values passed in and out:

* ``desired``: the attributes the configuration asks for (after evaluation and defaults), a
  plain dict. Sensitive attributes hold their real values here, and only here. For runs and
  sweeps (``plan_values``, ``create``, ``update``) it also says where those are: the reserved
  key :data:`SENSITIVE_PATHS` lists their paths (``env.TOKEN``), so that a fingerprint can
  hide them (see :func:`with_sensitive_paths`); it is absent when there are none.
* ``prior``: a :class:`ResourceState` from the state store: ``attributes`` are the configured
  values as last applied (sensitive ones replaced by a salted-hash marker), ``computed`` what
  the provider returned last time.
* ``Observed``: what the provider reports about the real object: a dict of computed
  attributes (facts, ids, paths). Keys must be JSON-serialisable.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainform.config.schema import BlockSchema
from trainform.errors import ProviderError

if TYPE_CHECKING:
    from trainform.state.backend import BackendSpec
    from trainform.state.store import StateStore

Observed = dict[str, Any]

_reporter = threading.local()


@contextlib.contextmanager
def _listening(local: threading.local, listener: Callable[[Any], None]) -> Iterator[None]:
    """Within the block, ``listener`` is this thread's ``local.listener``."""
    previous = getattr(local, "listener", None)
    local.listener = listener
    try:
        yield
    finally:
        local.listener = previous


def _tell(local: threading.local, value: Any) -> None:
    listener = getattr(local, "listener", None)
    if listener is not None:
        listener(value)


def reporting(listener: Callable[[str], None]) -> contextlib.AbstractContextManager[None]:
    """Within the block, :func:`report` calls from this thread reach ``listener`` (the engine
    shows them under the resource being changed)."""
    return _listening(_reporter, listener)


def report(message: str) -> None:
    """Tell the user how a long step of a create or update goes (an upload's progress, an
    image build's output). Providers never print; this is how they are heard. Does nothing
    when nobody listens."""
    _tell(_reporter, message)


PROGRESS_EVERY = 1.0  # seconds between progress reports


def byte_progress(what: str, total: int) -> Callable[[int], None]:
    """A callback taking the bytes done so far that reports ``what: X of Y MiB (N%)`` about
    once a second, and once at 100% (:func:`report`). Thread-safe."""
    last = [0.0]  # when the last report was; -1 once 100% has been reported
    lock = threading.Lock()
    mib = 1 << 20

    def progress(done: int) -> None:
        now = time.monotonic()
        with lock:
            if last[0] < 0 or (now - last[0] < PROGRESS_EVERY and done < total):
                return
            last[0] = -1.0 if done >= total else now
        done = min(done, total)
        report(
            f"{what}: {done / mib:.1f} of {total / mib:.1f} MiB ({100 * done // max(total, 1)}%)"
        )

    return progress


# Optional capabilities a provider may declare; the planner rejects, at plan time, a run that
# asks a compute target for one it lacks.
RUNS = "runs"
MULTI_NODE = "multi_node"
DOCKER = "docker"
SCALING = "scaling"
BATCH = "batch"
"""The compute submits several runs as one batch (``submit_many``: a Slurm job array)."""


@dataclass(frozen=True)
class ResourceState:
    """A resource as recorded in state."""

    address: str
    kind: str
    name: str
    key: int | str | None
    provider: str
    attributes: dict[str, Any] = field(default_factory=dict)
    computed: dict[str, Any] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    status: str = "ready"  # ready | tainted | pending (a create that never reported back)


@dataclass(frozen=True)
class RunRequest:
    """Everything a compute provider needs to start one run.

    ``spec`` is the launcher's spec (see :mod:`trainform.runs.launcher`) without the paths
    that only the target knows (``blob_dir``, ``lib_dir``, ``environment.cache_dir``);
    ``manifest`` is the snapshot to materialise, whose blobs are in ``blob_dir`` on this
    machine; ``compute`` holds the compute target's attributes as recorded in state;
    ``options`` is the run's block for its compute type (a run's ``slurm { }``), ``{}``
    without one.
    """

    run_id: str
    address: str
    compute: dict[str, Any]
    spec: dict[str, Any]
    manifest: dict[str, Any]
    blob_dir: Path
    node_count: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    def blob_hashes(self) -> list[str]:
        """Every blob the run needs on its target, sorted: its snapshot's files and its
        inputs' (the spec's ``inputs``, each with its manifest)."""
        inputs = self.spec.get("inputs") or ()
        manifests = [self.manifest, *(i["manifest"] for i in inputs if "manifest" in i)]
        return sorted(
            {e["sha256"] for m in manifests for e in m["entries"] if e.get("kind") == "file"}
        )


Handle = dict[str, Any]
"""Where a submitted run lives on its target (JSON-serialisable; kept in state)."""

TERMINAL = ("completed", "failed", "canceled", "timed_out", "lost")
"""Run statuses after which nothing more happens. ``lost``: the launcher vanished without
recording an outcome (the machine rebooted, the process was killed)."""


def awaited_values(provider: Provider, computed: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The values of computed attributes ``keys`` as expressions see them: what is recorded,
    except that an attribute still null while the provider's work has not settled is
    unknown (an ``outputs_path`` before the run ended and was collected)."""
    from trainform.config.values import UNKNOWN

    waiting = not provider.settled(computed)
    return {
        k: UNKNOWN if k not in computed or (waiting and computed[k] is None) else computed[k]
        for k in keys
    }


@dataclass(frozen=True)
class PlanValues:
    """Computed attributes a provider can know at plan time (a content fingerprint), the
    human reasons a change is planned ("src/train.py changed"), and warnings for the user
    (a source folder past its size thresholds)."""

    computed: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # What the change waits on to decide whether it happens at all (a run's inputs made by
    # runs that run first): the plan shows it as possible, and apply decides.
    awaits: tuple[str, ...] = ()


AWAITED = "awaited"
"""In a change's ``changed``: the change happens only if what it waits on (``awaits``) comes
out different; the provider's ``update`` decides once it is known."""


SENSITIVE_PATHS = "__sensitive_paths__"
"""The reserved key of ``desired`` listing its sensitive paths: a run's or sweep's, and what
any provider's ``plan_values`` is given."""


def with_sensitive_paths(desired: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``desired`` as the planner and engine give it to run and sweep providers (and the
    planner to every provider's ``plan_values``): with the
    sorted sensitive ``paths`` (an instance's, such as ``env.TOKEN`` or
    ``environment.variables.KEY``) under :data:`SENSITIVE_PATHS`, or as it is if there are
    none. Never stored: state records attributes from the configuration, not from this."""
    paths = sorted(paths)
    return {**desired, SENSITIVE_PATHS: paths} if paths else desired


@dataclass(frozen=True)
class ProviderContext:
    """What a provider may know about where it runs: the configuration directory and the
    directory trainform keeps its own files in (``.trainform/``).

    ``fingerprint_key`` returns the state's random key for keyed hashes of sensitive inputs
    (:meth:`trainform.state.store.StateStore.fingerprint_key`); it may be called from
    any thread. None where there is no state (``validate``)."""

    config_dir: Path
    data_dir: Path
    # Where state is, for background helpers (a sweep controller) only: see
    # trainform.state.backend.location. None where there is no state (``validate``).
    backend: BackendSpec | None = None
    workspace: str = "default"
    fingerprint_key: Callable[[], bytes] | None = None


class Provider:
    """Base class of every provider. Subclasses set the class attributes and implement the
    lifecycle methods. All methods may block; none may print.

    Class attributes:

    * ``name``: the provider's name (the compute ``type``, or the resource kind).
    * ``kind``: the block type it manages: ``"compute"``, ``"workspace"``, ``"environment"``.
    * ``schema``: a :class:`BlockSchema` of the attributes a block takes (type, required,
      default, sensitive, ``force_new``, computed, description).
    * ``capabilities``: a frozenset of :data:`RUNS`, :data:`MULTI_NODE`, :data:`DOCKER`,
      :data:`SCALING`.
    * ``verbs``: how plan text names create and delete (``{"create": "attach",
      "delete": "detach"}`` for compute that already exists elsewhere).
    * ``parallel_reads``: whether refresh should call ``read`` from a thread pool (true for
      providers that wait on the network; false where a read is a cheap local lookup and
      threads would cost more than they save).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "compute"
    schema: ClassVar[BlockSchema] = BlockSchema()
    capabilities: ClassVar[frozenset[str]] = frozenset()
    verbs: ClassVar[dict[str, str]] = {"create": "create", "delete": "destroy"}
    # create and update are given ``desired`` with its sensitive paths (see
    # with_sensitive_paths): a run's fingerprint hides secrets by them
    sensitive_inputs: ClassVar[bool] = False
    # Its resources are work a create starts and the engine awaits (runs, sweeps); the
    # computed attribute ``ident`` names one piece of it (a run id)
    does_work: ClassVar[bool] = False
    ident: ClassVar[str] = "id"
    parallel_reads: ClassVar[bool] = True

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        """Problems with ``desired`` beyond what the schema checks, as messages. Pure; the
        default finds none."""
        return []

    def run_problems(
        self, compute: dict[str, Any], node_count: int, options: dict[str, Any] | None = None
    ) -> list[str]:
        """Why a run of ``node_count`` nodes could never run on this compute target (its
        recorded or planned attributes in ``compute``; ``options``: the run's block for this
        compute type, see RunRequest), as messages; checked at plan time. The default finds
        none."""
        return []

    def environment_problems(self, compute: dict[str, Any], requirements: list[str]) -> list[str]:
        """Why a run whose environment installs ``requirements`` (pip lines) could never
        work on this compute (a spark compute: a pyspark pin other than the cluster's), as
        messages; checked at plan time. The default finds none."""
        return []

    def launcher_here(self, compute: dict[str, Any]) -> bool:
        """Whether a run's launcher runs on this machine (then it can watch a process of
        it, a sweep controller, by pid). The default: no."""
        return False

    def container_problems(self, compute: dict[str, Any], node_count: int) -> list[str]:
        """For compute with :data:`DOCKER`: why a run in a container could not run there
        (say its hosts' facts show no usable Docker engine), as messages; checked at plan
        time. The default finds none."""
        return []

    def image_present(self, compute: dict[str, Any], image: str) -> bool | None:
        """For compute with :data:`DOCKER`: whether the engine that would run a container
        has ``image`` (never pulls), or None when that cannot be known before apply. Raises
        ProviderError if the engine cannot be reached. The default asks this machine's
        engine."""
        from trainform.remote.docker import connect
        from trainform.runs.images import image_present

        return image_present(connect(None), image)

    def remember(self, address: str, desired: dict[str, Any]) -> None:
        """The configuration's values for a recorded resource, given before ``read`` so a
        provider can use secrets that state holds only as salted hashes (an SSH password).
        Keep them in memory only. The default ignores them."""
        return None

    def read(self, resource: ResourceState) -> Observed | None:
        """What exists now for a recorded resource: its computed attributes, or ``None`` if it
        is gone. No side effects. May raise ProviderError if the answer cannot be had (a host
        is unreachable); the planner shows that as drift."""
        raise NotImplementedError

    def import_existing(self, address: str, desired: dict[str, Any], ident: str) -> Observed:
        """Find the existing object ``ident`` names (``import`` blocks, ``trainform import``)
        for the configuration ``desired`` and return its computed attributes, as ``read``
        would for a recorded one. No side effects. Raises ProviderError naming ``ident`` if
        there is no such object or it does not match ``desired``; the default supports no
        import."""
        raise ProviderError(
            f"{address}: a {self.name} {self.kind} cannot be imported (import supports ssh "
            "and docker-cluster computes, and runs)",
            address=address,
        )

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        """Create or attach the resource and return its computed attributes. Idempotent: if it
        already exists in the desired form, return it. Raises ProviderError on failure."""
        raise NotImplementedError

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        """Change the attributes named in ``changed`` in place (none of them is force_new) and
        return the computed attributes. Raises ProviderError on failure."""
        raise NotImplementedError

    def delete(self, prior: ResourceState) -> None:
        """Destroy or detach the resource. Idempotent: deleting what is already gone
        succeeds. Raises ProviderError on failure."""
        raise NotImplementedError

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        """Computed attributes known at plan time, and reasons for a change. May read files
        and write trainform's own caches; must change nothing else. The default knows none."""
        return PlanValues()

    def describe(self, resource: ResourceState) -> dict[str, Any]:
        """What ``trainform compute show`` prints about a recorded resource: the default is
        its computed attributes; a cluster lists its nodes and queue, and also does its
        housekeeping (an ``actions`` list says what that changed)."""
        return dict(resource.computed)

    # -- resources that do work after they are created (runs, sweeps) --------------------

    def watch(
        self,
        computed: dict[str, Any],
        on_line: Callable[[str], None],
        on_status: Callable[[str, str], None],
        stop: threading.Event,
    ) -> tuple[dict[str, Any], Any, list[str]]:
        """Follow the work a create started until it ends or ``stop`` is set; blocks. Calls
        ``on_line`` per log line (of every node of a multi-node run: see
        :class:`trainform.runs.watch.LogLine`) and ``on_status(status, message)`` on
        changes. Returns the updated computed attributes, the collected results (None if
        stopped early) and the lines to show if the work failed: the last log lines (a
        multi-node run's, per failing rank under a ``rank N (node):`` line)."""
        raise ProviderError(f"{self.name!r} resources do no work to watch")

    def awaits(self, computed: dict[str, Any], prior: dict[str, Any] | None) -> bool:
        """Whether a create or update that returned ``computed`` (``prior`` before it)
        started work the engine waits on through :meth:`watch` before the resource's
        dependents start (a submitted run). Most resources are done when created."""
        return False

    def settled(self, computed: dict[str, Any]) -> bool:
        """Whether the work a create started has ended and its results are recorded in
        ``computed``. Until then, a computed attribute that is still null (a run's
        ``outputs_path``) is unknown, not null: expressions that use it wait, shown as
        ``(known after apply)``. Pure. Resources that do no work are always settled."""
        return True

    def record(
        self,
        store: StateStore,
        address: str,
        attributes: dict[str, Any],
        computed: dict[str, Any],
        results: dict[str, Any] | None = None,
    ) -> list[str]:
        """Record what the work produced beside the resource's state (a run's history row,
        with ``results`` once it ended); called on the intent to start it, when it started,
        when it ended and when it was found ended. Returns warnings (an export that
        failed). The default records nothing."""
        return []

    def outcome(self, computed: dict[str, Any], results: Any, tail: list[str]) -> str:
        """Why watched work did not complete, with ``tail`` (its last log lines); "" if it
        completed or was left running (``results`` None)."""
        return ""

    def settle(
        self, store: StateStore, prior: ResourceState, observed: dict[str, Any]
    ) -> dict[str, Any]:
        """``observed`` (a refresh of ``prior``), with the results of work that ended
        while nobody watched collected and recorded (:meth:`record`), exactly as if apply
        had waited for it. The default has nothing to settle."""
        return observed

    def adopt(
        self, store: StateStore, prior: ResourceState, observed: dict[str, Any]
    ) -> tuple[ResourceState, str] | None:
        """Resolve work whose apply stopped between recording the intent to start it and
        recording its handle, from what refresh ``observed``: the new record (written to
        ``store``) and a note, or None if ``prior`` is not such work or is still unresolved
        (see :meth:`submitting`)."""
        return None

    def submitting(self, computed: dict[str, Any]) -> bool:
        """Whether ``computed`` records the intent to start work, but no handle yet."""
        return False

    def detach(self, computed: dict[str, Any]) -> dict[str, Any]:
        """Let the work a create started go on without trainform watching; return the
        computed attributes (e.g. with a background process's pid). The default does
        nothing."""
        return computed

    def collect(self, computed: dict[str, Any]) -> dict[str, Any]:
        """Bring the results of finished work into the artifact store and summarise them."""
        raise ProviderError(f"{self.name!r} resources have no results to collect")

    # -- compute that runs work (capability RUNS) ----------------------------------------

    def submit(self, request: RunRequest) -> Handle:
        """Copy what the run needs to the target and start the launcher there, detached from
        trainform, then return at once with a handle. Waiting is the engine's job. Raises
        ProviderError (with host and command) if the run cannot be started."""
        raise ProviderError(f"compute type {self.name!r} cannot run work")

    def expected_handle(self, request: RunRequest) -> Handle | None:
        """The handle :meth:`submit` will return for ``request``, as far as it is known
        before the launch (launcher pids ``None``), recorded with the intent to submit: a run
        whose apply was cut off before its handle was recorded is looked up through
        :meth:`status` with it. None (the default) where a run cannot be looked up that way:
        it is then reported lost."""
        return None

    def submit_many(self, requests: list[RunRequest], at_once: int | None = None) -> list[Handle]:
        """Compute with the ``BATCH`` capability: submit ``requests`` (runs of this one
        compute) as one batch that runs at most ``at_once`` of them at a time (None: no
        limit of the caller's), returning at once with one handle per request, in order;
        each handle then works with ``status``, ``logs`` and ``cancel`` like ``submit``'s."""
        raise ProviderError(f"compute type {self.name!r} cannot submit runs as one batch")

    def status(self, handle: Handle) -> dict[str, Any]:
        """The run's status record (the launcher's ``status.json``: ``status``, ``exit_code``,
        timestamps, ``message``). ``status`` is ``lost`` when the launcher died without
        recording an outcome. A multi-node run's record also has ``nodes``: each node's
        ``name``, ``status`` and ``exit_code`` in rank order, when they are known. No side
        effects."""
        raise ProviderError(f"compute type {self.name!r} cannot run work")

    def logs(self, handle: Handle, offset: int, node: int = 0) -> tuple[bytes, int]:
        """Bytes of the log of the node of rank ``node`` (0 for a single-node run) from
        ``offset`` on, at most 1 MiB, and the offset to continue from. Raises ProviderError
        for a rank the run does not have. No side effects."""
        raise ProviderError(f"compute type {self.name!r} cannot run work")

    def nodes(self, handle: Handle) -> list[str]:
        """The names of the run's nodes (hosts, node containers) in rank order: one per
        node, "" where it is not known yet (a run still queued for nodes). No side effects.
        The default: a single node with no name of its own."""
        return [""]

    def metrics(self, handle: Handle, offset: int) -> tuple[bytes, int]:
        """Bytes of the run's metrics file (JSON lines) from ``offset`` on, and the offset to
        continue from, while it runs. No side effects."""
        raise ProviderError(f"compute type {self.name!r} cannot run work")

    def cancel(self, handle: Handle) -> None:
        """Stop the run (its whole process group). Idempotent: cancelling a finished run
        succeeds and changes nothing."""
        raise ProviderError(f"compute type {self.name!r} cannot run work")

    def fetch_outputs(self, handle: Handle, dest: Path) -> None:
        """Copy the run's outputs folder, log, metrics and status into ``dest``. Nothing is
        written outside ``dest``, whatever names the target reports."""
        raise ProviderError(f"compute type {self.name!r} cannot run work")


class Definition(Provider):
    """Base of providers whose resources define something trainform reads (an environment,
    a dataset): creating one records what it is, updating one defines it again, deleting one
    forgets it."""

    verbs: ClassVar[dict[str, str]] = {"create": "define", "delete": "forget"}

    def read(self, resource: ResourceState) -> Observed | None:
        return dict(resource.computed)

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        return self.create(address, desired)

    def delete(self, prior: ResourceState) -> None:
        return None


# -- intents: work about to be started, recorded before it is ---------------------------------

_intents = threading.local()


def recording_intents(
    record: Callable[[Observed], None],
) -> contextlib.AbstractContextManager[None]:
    """Within the block, a run submitted from this thread calls ``record(computed)`` with
    its intent (run id, target, where its launcher will be, status ``submitting``) before
    anything is started on the target; if ``record`` raises, nothing is started."""
    return _listening(_intents, record)


def announce(intent: Observed) -> None:
    """Record the intent to start work (see :func:`recording_intents`), if recorded here."""
    _tell(_intents, intent)
