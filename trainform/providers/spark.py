"""A Spark cluster as a compute target (``compute "x" { type = "spark" }``): a standalone
master (``spark://``), YARN, Kubernetes or a ``local[N]`` master, reached through
``spark-submit`` on this machine or, with ``gateway`` set, on a gateway host over SSH (an
HDInsight-style head node), with the ssh compute's options and host-key rules.

A run is its driver: the launcher every target runs starts ``spark-submit`` in client mode
on that machine as the run's command (never through a shell), so status, log streaming,
metrics, outputs, ``max_duration`` and cancel work as for any run. The run folder, staging,
liveness and collection are those of the local compute (no gateway) or of the ssh compute
(gateway), which this provider drives; it adds the ``spark-submit`` command line, a zip of
the snapshot's Python files for ``--py-files`` (made by the launcher), and the application:
the launcher finds its id and web UI in the driver's log (``status.json``'s ``spark``), and
cancel kills it on the cluster through the standalone master's kill action before the
driver is stopped, so no executor is left.

Attach finds Spark (``spark_home``, else SPARK_HOME, else the pyspark package, else
``spark-submit`` on PATH), checks that ``spark-submit --version`` runs and reads the version;
for a standalone master it reads the master's JSON status (``master_ui``, default port 8080
of the master's host): alive workers, their cores and memory. Refresh reads the version from
Spark's files (no JVM) and the status again: a master that does not answer, or a worker
gone, is drift. Plan refuses a run whose environment pins a pyspark version other than the
cluster's.

Executors run the interpreter the driver runs (``PYSPARK_PYTHON``): the environment's, which
on a cluster must exist on every worker at the same path (a user-managed interpreter, or a
virtualenv in a ``workdir`` the workers share).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from typing import Any, ClassVar

from trainform.config.schema import Attribute, BlockSchema
from trainform.errors import ProviderError
from trainform.providers import spark_cli as cli
from trainform.providers.base import (
    RUNS,
    SENSITIVE_PATHS,
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
from trainform.providers.local import LocalComputeProvider
from trainform.providers.ssh import SSHComputeProvider

SNAPSHOT_ZIP = "snapshot-py.zip"  # in the run folder: the snapshot's Python files
_PIN = re.compile(
    r"\s*pyspark(?:\[[^\]]*\])?\s*===?\s*([0-9]+(?:\.[0-9]+)*(?:\.\*|[A-Za-z0-9.+!-]*))"
    r"\s*(?:;.*)?$",
    re.I,
)


_SPARK_FIELDS = {
    "app_id": re.compile(r"(?:app|application|local)[-_][0-9]{1,20}(?:[-_][0-9]{1,20})?"),
    "ui": re.compile(r"https?://[A-Za-z0-9.:\[\]-]{1,300}"),
}


def pinned_pyspark(requirements: list[str]) -> str:
    """The version a ``pyspark==...`` line pins, as written (``4.3.0``, ``4.3``, ``4.3.*``,
    ``4.3.0rc1``); ``""`` when none does."""
    for line in requirements:
        found = _PIN.match(str(line))
        if found:
            return found.group(1)
    return ""


def _release(version: str) -> list[int]:
    """The release numbers of a version, padded to three (``4.3`` is 4.3.0, as pip reads it)."""
    numbers = [int(n) for n in re.findall(r"[0-9]+", version.split("*")[0].split("rc")[0])[:3]]
    return numbers + [0] * (3 - len(numbers))


def version_problem(pinned: str, cluster: str) -> str:
    """Why a pyspark pinned at ``pinned`` cannot drive a cluster at ``cluster`` (``""``:
    it can). ``==4.3`` is 4.3.0, as pip reads it; ``==4.3.*`` any 4.3 release; a pre- or
    post-release suffix counts as its release."""
    if not pinned or not cluster:
        return ""
    want = re.match(r"[0-9]+(?:\.[0-9]+)*", pinned)
    assert want is not None  # the pin pattern starts with a number
    parts = [int(n) for n in want.group(0).split(".")]
    have = _release(cluster)
    if pinned.endswith(".*") and have[: len(parts)] == parts:
        return ""
    if not pinned.endswith(".*") and _release(want.group(0)) == have:
        return ""
    return (
        f"the environment pins pyspark {pinned}, but the Spark cluster runs {cluster}: "
        f"a driver must use the cluster's version (pin pyspark=={cluster})"
    )


class SparkComputeProvider(Provider):
    """See the module."""

    name = "spark"
    kind = "compute"
    capabilities = frozenset({RUNS})
    verbs: ClassVar[dict[str, str]] = {"create": "attach", "delete": "detach"}
    schema = BlockSchema(
        attributes={
            "description": Attribute(description="Free text."),
            "tags": Attribute("map(string)", default={}, description="Labels."),
            "master": Attribute(
                required=True,
                description='spark://host:7077 (standalone; several: "spark://a:7077,b:7077"), '
                '"yarn" (with HADOOP_CONF_DIR in env), "k8s://...", or "local[N]".',
            ),
            "master_ui": Attribute(
                description="A standalone master's web UI, for its JSON status and kill "
                "action (default: port 8080 of the master's host)."
            ),
            "spark_home": Attribute(
                description="Spark's folder on the machine that runs spark-submit (default: "
                "SPARK_HOME, the pyspark package, or spark-submit on PATH)."
            ),
            "conf": Attribute(
                "map(string)", default={}, description="spark.* settings of every run (--conf)."
            ),
            "env": Attribute(
                "map(string)",
                default={},
                description="Variables of spark-submit and the driver: SPARK_LOCAL_IP, "
                "HADOOP_CONF_DIR, JAVA_HOME... (a run's env and environment override them).",
            ),
            "max_concurrent_runs": Attribute(
                "number", default=1, description="Applications submitted at once."
            ),
            "workdir": Attribute(
                force_new=True,
                description="Where run folders live on the machine that runs spark-submit "
                "(default: .trainform/spark beside the configuration, or ~/.trainform/spark "
                "on the gateway).",
            ),
            "facts": Attribute(
                "map",
                computed=True,
                description="Spark's version and home; for a standalone master its status, "
                "alive workers, their cores and memory.",
            ),
            "workdir_path": Attribute(computed=True, description="Absolute path of the workdir."),
            **login_schema(
                "gateway",
                'A host, "user@host" or "user@host:port", that runs spark-submit and the '
                "drivers (HDInsight's head node), reached over SSH with the ssh compute's "
                "options and host-key rules (default: this machine).",
            ),
        },
        description="A Spark cluster reached through spark-submit.",
    )

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        self._local = LocalComputeProvider(context)
        self._ssh = SSHComputeProvider(context)  # the gateway's connections and credentials

    # -- where commands run
    def host(self, attrs: dict[str, Any]) -> CommandHost:
        """The machine that runs spark-submit: the gateway (``attrs``: the compute's
        attributes with the ``host_keys`` to pin, or a handle's ``target``) or this one."""
        if attrs.get("gateway"):
            return SSHHost(self._ssh, attrs, "gateway")
        return LocalHost(missing="install it, or set gateway to a machine that has it")

    def launcher_here(self, compute: dict[str, Any]) -> bool:
        return not compute.get("gateway")

    def _python(self, attrs: dict[str, Any]) -> str:
        return "python3" if attrs.get("gateway") else sys.executable

    def remember(self, address: str, desired: dict[str, Any]) -> None:
        """Keeps the gateway's password or passphrase in this process's memory."""
        if desired.get("gateway"):
            self._ssh.remember(address, login_attributes(desired, "gateway")[1])

    # -- validation and lifecycle
    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        problems = login_problems(self._ssh, address, desired, "gateway")
        master = desired.get("master")
        if isinstance(master, str) and not cli.master_kind(master):
            problems.append(
                f"master {master[:100]!r} is not spark://HOST:PORT, yarn, k8s://... or local[N]"
            )
        n = desired.get("max_concurrent_runs")
        if isinstance(n, (int, float)) and n < 1:
            problems.append("max_concurrent_runs must be at least 1")
        for key in desired.get("conf") or {}:
            if not cli.CONF_KEY.fullmatch(str(key)):
                problems.append(f"conf key {str(key)[:80]!r} is not a Spark setting (spark.*)")
        for key in desired.get("env") or {}:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", str(key)):
                problems.append(f"env name {str(key)[:80]!r} is not a variable name")
        ui = desired.get("master_ui")
        if isinstance(ui, str) and not re.fullmatch(r"https?://[^\s/]+/?", ui):
            problems.append(f"master_ui {ui[:100]!r} must be http(s)://HOST:PORT")
        return problems

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        """Refuses a sensitive value in ``env`` or ``conf``: they are recorded in state (as
        sealed markers, which a run would then get instead of the value), in run handles and
        on spark-submit's command line. The gateway gets the ssh compute's advice."""
        secret = [
            str(path)
            for path in desired.get(SENSITIVE_PATHS) or ()
            if str(path).startswith(("env.", "conf."))
        ]
        if secret:
            raise ProviderError(
                f"{', '.join(secret)} is sensitive, but a spark compute's env and conf are "
                "recorded in state and run handles and passed on spark-submit's command line: "
                "give secrets to the run's env (or environment variables) instead",
                address=address,
            )
        if desired.get("gateway"):  # the ssh compute's advice (keys over passwords)
            return self._ssh.plan_values(address, login_attributes(desired, "gateway")[1], None)
        return PlanValues()

    def _workdir(self, attrs: dict[str, Any]) -> str:
        workdir = attrs.get("workdir")
        if workdir:
            text = str(workdir)
            if attrs.get("gateway") or os.path.isabs(text) or text.startswith("~"):
                return text
            return str(self.context.config_dir / text)
        if attrs.get("gateway"):
            return "~/.trainform/spark"
        return str(self.context.data_dir / "spark")

    def _attach(
        self, attrs: dict[str, Any], pinned: dict[str, str], check: bool, found: str = ""
    ) -> Observed:
        """Facts, the workdir and the host keys (``pinned``: those recorded). ``check``
        (attach, not refresh): also run ``spark-submit --version``, a JVM's start.
        ``found``: the Spark folder attach found, looked at first when ``spark_home`` is
        unset (no pyspark import on each refresh)."""
        host = self.host({**attrs, "host_keys": pinned})
        standalone = cli.master_kind(str(attrs["master"])) == "standalone"
        probe = cli.parse_probe(
            host.checked(
                [
                    self._python(attrs),
                    "-c",
                    cli.PROBE_SCRIPT,
                    str(attrs.get("spark_home") or found),
                    self._workdir(attrs),
                    self.master_ui(attrs) if standalone else "",
                ]
            )
        )
        if not probe.submit:
            raise ProviderError(
                f"no spark-submit on {host.where}"
                + (f" in {probe.home}/bin" if probe.home else "")
                + ": set spark_home to Spark's folder, or install pyspark there"
            )
        if probe.workdir_error:
            raise ProviderError(f"{probe.workdir_error} on {host.where}")
        version = probe.version
        if check or not version:
            code, out, err = host.run([probe.submit, "--version"], self._env(attrs))
            if code != 0:
                raise ProviderError(
                    f"{probe.submit} --version exited with {code} on {host.where}: "
                    f"{(err or out).strip()[-500:]}"
                )
            version = ".".join(str(n) for n in cli.parse_version(err + out))
        facts: dict[str, Any] = {
            "spark_version": version,
            "spark_home": probe.home,
            "spark_submit": probe.submit,
            "master_kind": cli.master_kind(str(attrs["master"])),
        }
        if standalone:
            if probe.master_error:
                raise self._no_answer(attrs, host, probe.master_error)
            status = cli.parse_master_status(probe.master.encode())
            alive = status.alive
            facts.update(
                master_status=status.status,
                workers=len(status.workers),
                alive_workers=len(alive),
                cores=sum(w.cores for w in alive),
                memory_mb=sum(w.memory_mb for w in alive),
            )
        elif facts["master_kind"] == "local":
            facts["cores"] = cli.local_cores(str(attrs["master"]), probe.cpus)
        return {"facts": facts, "workdir_path": probe.workdir, "host_keys": host.host_keys()}

    def _env(self, attrs: dict[str, Any]) -> dict[str, str]:
        return {str(k): str(v) for k, v in (attrs.get("env") or {}).items()}

    def master_ui(self, attrs: dict[str, Any]) -> str:
        """A standalone master's web UI (``""`` for other masters)."""
        master = str(attrs.get("master") or "")
        if cli.master_kind(master) != "standalone":
            return ""
        return str(attrs.get("master_ui") or cli.default_ui(master)).rstrip("/")

    def master_status(self, attrs: dict[str, Any], host: CommandHost) -> cli.MasterStatus:
        """The standalone master's JSON status, fetched by the machine that runs
        spark-submit (the master's UI may be reachable from there only)."""
        ui = self.master_ui(attrs)
        code, out, err = host.run([self._python(attrs), "-c", cli.MASTER_SCRIPT, "status", ui])
        if code != 0:
            raise self._no_answer(attrs, host, err)
        return cli.parse_master_status(out.encode())

    def _no_answer(self, attrs: dict[str, Any], host: CommandHost, why: str) -> ProviderError:
        return ProviderError(
            f"the Spark master {attrs.get('master')} did not answer: its status at "
            f"{self.master_ui(attrs)}/json/, asked from {host.where}: {why.strip()[-300:]}"
        )

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return self._attach(desired, {}, check=True)

    def read(self, resource: ResourceState) -> Observed | None:
        pinned = resource.computed.get("host_keys") or {}
        facts = resource.computed.get("facts")
        found = str(facts.get("spark_home") or "") if isinstance(facts, dict) else ""
        observed = self._attach(resource.attributes, pinned, check=False, found=found)
        return {**resource.computed, **observed}

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        pinned = prior.computed.get("host_keys") or {}
        return {**prior.computed, **self._attach(desired, pinned, check=True)}

    def delete(self, prior: ResourceState) -> None:
        return None  # detaching leaves the cluster and the workdir as they are

    def describe(self, resource: ResourceState) -> dict[str, Any]:
        """The recorded facts and, for a standalone master, its live status: workers and
        the running and finished applications."""
        attrs = {**resource.attributes, **resource.computed}
        shown = {**resource.computed, "master": attrs.get("master")}
        if cli.master_kind(str(attrs.get("master"))) == "standalone":
            status = self.master_status(attrs, self.host(attrs))
            shown["workers"] = [
                {
                    "id": w.id,
                    "host": w.host,
                    "state": w.state,
                    "cores": f"{w.cores_used}/{w.cores}",
                    "memory_mb": f"{w.memory_used_mb}/{w.memory_mb}",
                }
                for w in status.workers
            ]
            shown["applications"] = [
                {"id": a.id, "name": a.name, "state": a.state, "cores": a.cores}
                for a in (*status.active, *status.completed[-20:])
            ]
        return shown

    # -- plan-time checks of runs
    def run_problems(
        self, compute: dict[str, Any], node_count: int, options: dict[str, Any] | None = None
    ) -> list[str]:
        """The run's ``spark { }`` values; cluster deploy mode but on YARN (standalone and
        local masters cannot run a Python driver in the cluster; on Kubernetes cancel could
        not stop the driver's pod)."""
        options = options or {}
        problems = []
        mode = options.get("deploy_mode") or "client"
        kind = cli.master_kind(str(compute.get("master") or ""))
        if mode == "cluster" and kind != "yarn":
            why = (
                "trainform could not stop its driver on cancel"
                if kind == "k8s"
                else "Spark cannot run a Python driver in the cluster there"
            )
            problems.append(
                f'deploy_mode = "cluster" needs a yarn master; with a {kind} master {why}: '
                'use deploy_mode = "client" (the driver runs under trainform\'s launcher on '
                "the machine that runs spark-submit)"
            )
        try:
            self._submit_argv(compute, options, "run", "script.py")
        except ProviderError as exc:
            problems.append(str(exc))
        return problems

    def environment_problems(self, compute: dict[str, Any], requirements: list[str]) -> list[str]:
        """A pyspark pin other than the cluster's version (from the recorded facts)."""
        facts = compute.get("facts")
        version = str(facts.get("spark_version") or "") if isinstance(facts, dict) else ""
        problem = version_problem(pinned_pyspark(requirements), version)
        return [problem] if problem else []

    # -- runs
    def _submit_argv(
        self, compute: dict[str, Any], options: dict[str, Any], run_id: str, script: str
    ) -> list[str]:
        facts = compute.get("facts") if isinstance(compute.get("facts"), dict) else {}
        submit = str((facts or {}).get("spark_submit") or "spark-submit")
        conf = {str(k): str(v) for k, v in (compute.get("conf") or {}).items()}
        conf.update({str(k): str(v) for k, v in (options.get("conf") or {}).items()})
        py_files = [str(p) for p in options.get("py_files") or []]
        for path in py_files:
            if path.startswith("/") or ".." in path.split("/"):
                raise ProviderError(f"py_files entry {path!r} must be a path in the snapshot")
        return cli.submit_argv(
            submit,
            cli.SubmitOptions(
                master=str(compute.get("master") or ""),
                name=f"trainform-{run_id}",
                deploy_mode=str(options.get("deploy_mode") or "client"),
                num_executors=options.get("num_executors"),
                executor_cores=options.get("executor_cores"),
                executor_memory=str(options.get("executor_memory") or ""),
                driver_memory=str(options.get("driver_memory") or ""),
                conf=conf,
                packages=[str(p) for p in options.get("packages") or []],
                py_files=[f"../{SNAPSHOT_ZIP}", *py_files],
            ),
            script,
        )

    def runner(self, compute: dict[str, Any]) -> tuple[Provider, dict[str, Any]]:
        """The provider that runs the driver's launcher and the compute it is given: the
        local compute, or the ssh compute with the gateway as its one host."""
        common = {
            "workdir_path": compute.get("workdir_path"),
            "max_concurrent_runs": compute.get("max_concurrent_runs"),
        }
        if compute.get("gateway"):
            _, attrs = login_attributes(compute, "gateway")
            return self._ssh, {**attrs, **common}
        return self._local, common

    def submit(self, request: RunRequest) -> Handle:
        spec = dict(request.spec)
        script = spec.pop("script", None)
        if not isinstance(script, str) or spec.get("command"):
            raise ProviderError(
                f"{request.address}: a run on spark compute sets script (the driver), not command",
                address=request.address,
            )
        if spec["environment"].get("docker"):
            raise ProviderError(f"{request.address}: a spark driver does not run in a container")
        problems = self.environment_problems(
            request.compute, list(spec["environment"].get("requirements") or [])
        )
        if problems:
            raise ProviderError(f"{request.address}: {problems[0]}", address=request.address)
        spec["command"] = self._submit_argv(
            request.compute, request.options, request.run_id, script
        )
        spec["spark"] = {"zip": SNAPSHOT_ZIP}
        environment = spec["environment"]
        spec["environment"] = {
            **environment,
            "variables": {**self._env(request.compute), **(environment.get("variables") or {})},
        }
        provider, compute = self.runner(request.compute)
        handle = provider.submit(replace(request, compute=compute, spec=spec))
        return {**handle, "spark": self._application_target(request.compute)}

    def expected_handle(self, request: RunRequest) -> Handle | None:
        """The local or ssh compute's, with the application's target."""
        provider, compute = self.runner(request.compute)
        expected = provider.expected_handle(replace(request, compute=compute))
        if expected is None:
            return None
        return {**expected, "spark": self._application_target(request.compute)}

    def _application_target(self, compute: dict[str, Any]) -> dict[str, Any]:
        """What a handle records to reach the application later: the master, its UI, and
        the gateway's options (no secret)."""
        return {
            "master": compute.get("master"),
            "master_ui": self.master_ui(compute),
            "env": self._env(compute),  # HADOOP_CONF_DIR: where yarn finds the cluster
            **(
                {
                    "gateway": compute["gateway"],
                    **host_target(compute),
                }
                if compute.get("gateway")
                else {}
            ),
        }

    def _inner(self, handle: Handle) -> Provider:
        return self._ssh if "nodes" in handle else self._local

    def status(self, handle: Handle) -> dict[str, Any]:
        """The launcher's status; its ``spark`` (the application's id and UI, from a file
        in the run's folder, which the run could write) kept only as the patterns allow."""
        status = self._inner(handle).status(handle)
        found = status.pop("spark", None)
        if isinstance(found, dict):
            kept = {
                key: value
                for key, value in found.items()
                if key in _SPARK_FIELDS
                and isinstance(value, str)
                and _SPARK_FIELDS[key].fullmatch(value)
            }
            if kept:
                status["spark"] = kept
        return status

    def logs(self, handle: Handle, offset: int, node: int = 0) -> tuple[bytes, int]:
        return self._inner(handle).logs(handle, offset, node)

    def metrics(self, handle: Handle, offset: int) -> tuple[bytes, int]:
        return self._inner(handle).metrics(handle, offset)

    def fetch_outputs(self, handle: Handle, dest: Any) -> None:
        self._inner(handle).fetch_outputs(handle, dest)

    def cancel(self, handle: Handle) -> None:
        """Stops the driver through its launcher (the run ends ``canceled``), then kills
        the application on the cluster, so its executors stop even if the driver cannot
        say goodbye: through a standalone master's kill action, or ``yarn application
        -kill`` (a YARN driver in cluster mode outlives spark-submit). Idempotent."""
        self._inner(handle).cancel(handle)
        target = handle.get("spark") or {}
        kind = cli.master_kind(str(target.get("master") or ""))
        app = (self.status(handle).get("spark") or {}).get("app_id")
        if not isinstance(app, str):
            return
        host = self.host(target)
        if kind == "yarn" and re.fullmatch(r"application_[0-9]+_[0-9]+", app):
            host.checked(["yarn", "application", "-kill", app], self._env(target))
        if kind != "standalone" or not app.startswith("app-"):
            return
        if app not in {a.id for a in self.master_status(target, host).active}:
            return  # it ended with its driver (the master refuses to kill what is not active)
        code, _, err = host.run(
            [self._python(target), "-c", cli.MASTER_SCRIPT, "kill", str(target["master_ui"]), app]
        )
        if code != 0:
            raise ProviderError(
                f"the Spark master at {target['master_ui']} did not kill {app} "
                f"({host.where}): {err.strip()[-300:]}"
            )
