"""Spark's client side as argument vectors and parsers, with no I/O: ``spark-submit``'s command
line, its ``--version`` banner, and a standalone master's JSON status (``/json/``).

Everything parsed here comes from a cluster or a gateway and is treated as hostile: sizes are
bounded, fields are type-checked, and anything unexpected raises SparkOutputError naming
what was wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainform.errors import ProviderError

MAX_STATUS = 4 << 20  # bytes of a master's JSON status read at most


class SparkOutputError(ProviderError):
    """A Spark command or endpoint answered something this module cannot read."""


@dataclass(frozen=True)
class SubmitOptions:
    """What a run asks of ``spark-submit`` (``None``/empty: Spark's default)."""

    master: str
    name: str
    deploy_mode: str = "client"
    num_executors: int | None = None
    executor_cores: int | None = None
    executor_memory: str = ""
    driver_memory: str = ""
    conf: Mapping[str, str] | None = None
    packages: Sequence[str] = ()
    py_files: Sequence[str] = ()


_MEMORY = re.compile(r"[1-9][0-9]{0,8}[kmgt]?", re.IGNORECASE)
CONF_KEY = re.compile(r"spark\.[A-Za-z0-9_.-]{1,200}")
_PACKAGE = re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.+-]+")


def submit_argv(
    spark_submit: str, options: SubmitOptions, script: str, arguments: Sequence[str] = ()
) -> list[str]:
    """``spark-submit``'s argument vector for ``script`` with ``arguments`` passed as written
    (no shell anywhere). Raises ProviderError for a value Spark would misread: a memory size
    that is not ``512m``/``2g``-style, a conf key outside ``spark.*``, a package that is not
    ``group:artifact:version``, a deploy mode other than client or cluster."""
    if options.deploy_mode not in ("client", "cluster"):
        raise ProviderError(f"deploy_mode must be client or cluster, not {options.deploy_mode!r}")
    argv = [
        spark_submit,
        "--master",
        options.master,
        "--deploy-mode",
        options.deploy_mode,
        "--name",
        options.name,
    ]
    for flag, number in (
        ("--num-executors", options.num_executors),
        ("--executor-cores", options.executor_cores),
    ):
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ProviderError(f"{flag[2:].replace('-', '_')} must be a whole number ≥ 1")
            argv += [flag, str(number)]
    for flag, size in (
        ("--executor-memory", options.executor_memory),
        ("--driver-memory", options.driver_memory),
    ):
        if size:
            if not _MEMORY.fullmatch(size):
                raise ProviderError(
                    f"{flag[2:].replace('-', '_')} {size[:40]!r} must be a size such as "
                    '"512m" or "2g"'
                )
            argv += [flag, size]
    for key, value in sorted((options.conf or {}).items()):
        if not CONF_KEY.fullmatch(key):
            raise ProviderError(f"conf key {key[:80]!r} is not a Spark setting (spark.*)")
        argv += ["--conf", f"{key}={value}"]
    if options.packages:
        for package in options.packages:
            if not _PACKAGE.fullmatch(package):
                raise ProviderError(
                    f"package {package[:80]!r} must be Maven coordinates group:artifact:version"
                )
        argv += ["--packages", ",".join(options.packages)]
    if options.py_files:
        if any("," in f for f in options.py_files):
            raise ProviderError("a py_files path must not contain a comma")
        argv += ["--py-files", ",".join(options.py_files)]
    return [*argv, script, *arguments]


_VERSION = re.compile(r"version\s+(\d+)\.(\d+)\.(\d+)")


def parse_version(banner: str) -> tuple[int, int, int]:
    """Spark's version from ``spark-submit --version`` (its banner, on stderr)."""
    found = _VERSION.search(banner[:20000])
    if found is None:
        raise SparkOutputError("spark-submit --version printed no Spark version")
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


@dataclass(frozen=True)
class Worker:
    id: str
    host: str
    state: str
    cores: int
    cores_used: int
    memory_mb: int
    memory_used_mb: int


@dataclass(frozen=True)
class Application:
    id: str
    name: str
    state: str
    cores: int


@dataclass(frozen=True)
class MasterStatus:
    url: str
    status: str
    workers: tuple[Worker, ...]
    active: tuple[Application, ...]
    completed: tuple[Application, ...]

    @property
    def alive(self) -> tuple[Worker, ...]:
        return tuple(w for w in self.workers if w.state == "ALIVE")


def _text(item: Mapping[str, Any], key: str, limit: int = 300) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        raise SparkOutputError(f"the master's status: {key} is not text")
    return value[:limit]


def _count(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SparkOutputError(f"the master's status: {key} is not a count")
    return value


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SparkOutputError(f"the master's status: {key} is not a list of objects")
    return items[:10000]


def _application(item: Mapping[str, Any]) -> Application:
    return Application(
        id=_text(item, "id"),
        name=_text(item, "name"),
        state=_text(item, "state"),
        cores=_count(item, "cores"),
    )


def parse_master_status(body: bytes) -> MasterStatus:
    """A standalone master's ``/json/`` answer (at most MAX_STATUS bytes)."""
    if len(body) > MAX_STATUS:
        raise SparkOutputError(f"the master's status is larger than {MAX_STATUS} bytes")
    try:
        data = json.loads(body)
    except ValueError:
        raise SparkOutputError("the master's status is not JSON") from None
    if not isinstance(data, dict):
        raise SparkOutputError("the master's status is not a JSON object")
    return MasterStatus(
        url=_text(data, "url"),
        status=_text(data, "status"),
        workers=tuple(
            Worker(
                id=_text(w, "id"),
                host=_text(w, "host"),
                state=_text(w, "state"),
                cores=_count(w, "cores"),
                cores_used=_count(w, "coresused"),
                memory_mb=_count(w, "memory"),
                memory_used_mb=_count(w, "memoryused"),
            )
            for w in _objects(data, "workers")
        ),
        active=tuple(_application(a) for a in _objects(data, "activeapps")),
        completed=tuple(_application(a) for a in _objects(data, "completedapps")),
    )


# Both host scripts read a standalone master's JSON status (at most MAX_STATUS + 1 bytes).
_MASTER_JSON = r"""
def master_json(ui):
    import urllib.request
    with urllib.request.urlopen(ui.rstrip("/") + "/json/", timeout=10) as answer:
        return answer.read(MAX_STATUS_BYTES).decode("utf-8", "replace")
""".replace("MAX_STATUS_BYTES", str(MAX_STATUS + 1))

# Run by the host's Python (``python3 -c PROBE_SCRIPT SPARK_HOME WORKDIR [MASTER_UI]``): where
# Spark is (the given folder, else SPARK_HOME, else the pyspark package, else spark-submit on
# PATH), its version from its files (no JVM: refresh stays fast), the workdir made and made
# absolute (``~`` expanded), and with MASTER_UI the master's JSON status (``master``) or why
# it did not answer (``master_error``): one process per refresh. Prints one JSON object.
PROBE_SCRIPT = (
    _MASTER_JSON
    + r"""
import glob, json, os, re, shutil, sys
given, workdir = sys.argv[1], sys.argv[2]
home = given or os.environ.get("SPARK_HOME", "")
if not home:
    try:
        import pyspark
        home = os.path.dirname(pyspark.__file__)
    except Exception:
        exe = shutil.which("spark-submit")
        if exe:
            home = os.path.dirname(os.path.dirname(os.path.realpath(exe)))
home = os.path.abspath(os.path.expanduser(home)) if home else ""
submit = os.path.join(home, "bin", "spark-submit") if home else ""
version = ""
def first(pattern, text):
    found = re.search(pattern, text)
    return found.group(1) if found else ""
try:
    with open(os.path.join(home, "RELEASE")) as f:
        version = first(r"Spark ([0-9]+\.[0-9]+\.[0-9]+)", f.read(4096))
except OSError:
    pass
if not version:
    for jar in sorted(glob.glob(os.path.join(home, "jars", "spark-core_*.jar"))):
        version = first(r"-([0-9]+\.[0-9]+\.[0-9]+)\.jar$", jar) or version
if not version:
    try:
        with open(os.path.join(home, "version.py")) as f:
            version = first(r"__version__[^\"']*[\"']([0-9]+\.[0-9]+\.[0-9]+)", f.read(4096))
    except OSError:
        pass
path = os.path.abspath(os.path.expanduser(workdir))
error = ""
try:
    os.makedirs(path, exist_ok=True)
except OSError as exc:
    error = "cannot create workdir %s: %s" % (path, exc.strerror)
master = master_error = ""
if len(sys.argv) > 3 and sys.argv[3]:
    try:
        master = master_json(sys.argv[3])
    except Exception as exc:
        master_error = type(exc).__name__ + ": " + str(exc)
print(json.dumps({
    "master": master,
    "master_error": master_error[:500],
    "home": home,
    "submit": submit if submit and os.access(submit, os.X_OK) else "",
    "version": version,
    "workdir": path,
    "workdir_error": error,
    "cpus": os.cpu_count() or 1,
}))
"""
)

# ``python3 -c MASTER_SCRIPT status UI`` prints a standalone master's JSON status;
# ``... kill UI APP_ID`` asks it to kill an application as its web UI's kill button does
# (Spark 4 wants the page's CSRF token: read from the page first). Exit 3: the master did not
# answer (the reason on stderr).
MASTER_SCRIPT = (
    _MASTER_JSON
    + r"""
import re, sys, urllib.parse, urllib.request
action, ui = sys.argv[1], sys.argv[2].rstrip("/")
try:
    if action == "status":
        sys.stdout.write(master_json(ui))
    else:
        with urllib.request.urlopen(ui + "/", timeout=10) as answer:
            page = answer.read(4 << 20).decode("utf-8", "replace")
        form = {"id": sys.argv[3], "terminate": "true"}
        found = re.search(r'name="csrfToken" value="([0-9A-Za-z_-]+)"', page)
        if found:
            form["csrfToken"] = found.group(1)
        else:  # no kill form on the page: is the application still active?
            import json
            active = json.loads(master_json(ui)).get("activeapps") or []
            if sys.argv[3] not in [a.get("id") for a in active if isinstance(a, dict)]:
                sys.exit(0)  # it ended meanwhile: nothing to kill
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(urllib.request.Request(ui + "/app/kill/", data=data), timeout=10):
            pass
except Exception as exc:
    sys.stderr.write(type(exc).__name__ + ": " + str(exc))
    sys.exit(3)
"""
)


@dataclass(frozen=True)
class Probe:
    """What :data:`PROBE_SCRIPT` found on a host."""

    home: str
    submit: str
    version: str
    workdir: str
    workdir_error: str
    cpus: int
    master: str = ""  # the master's JSON status, as text
    master_error: str = ""


def parse_probe(out: str) -> Probe:
    """:data:`PROBE_SCRIPT`'s answer (hostile: from a host)."""
    try:
        data = json.loads(out.strip().splitlines()[-1] if out.strip() else "")
    except ValueError:
        raise SparkOutputError("the Spark probe printed no JSON") from None
    if not isinstance(data, dict):
        raise SparkOutputError("the Spark probe printed no JSON object")
    cpus = data.get("cpus")
    return Probe(
        home=_text(data, "home", 4096),
        submit=_text(data, "submit", 4096),
        version=_text(data, "version", 40),
        workdir=_text(data, "workdir", 4096),
        workdir_error=_text(data, "workdir_error", 500),
        cpus=cpus if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 0 else 1,
        master=_text(data, "master", MAX_STATUS + 1),
        master_error=_text(data, "master_error", 500),
    )


def master_kind(master: str) -> str:
    """``standalone`` (``spark://``), ``local`` (``local``, ``local[N]``, ``local[*]``),
    ``yarn``, ``k8s`` (``k8s://``), or ``""`` for anything else."""
    if re.fullmatch(
        r"spark://[A-Za-z0-9.-]+(:[0-9]{1,5})?(,[A-Za-z0-9.-]+(:[0-9]{1,5})?)*", master
    ):
        return "standalone"
    if re.fullmatch(r"local(\[([0-9]{1,4}|\*)(,[0-9]{1,4})?\])?", master):
        return "local"
    if master == "yarn":
        return "yarn"
    if master.startswith("k8s://"):
        return "k8s"
    return ""


def local_cores(master: str, cpus: int) -> int:
    """The cores a ``local[...]`` master uses on a host with ``cpus``."""
    found = re.fullmatch(r"local\[([0-9]{1,4})(,[0-9]{1,4})?\]", master)
    return int(found.group(1)) if found else (1 if master == "local" else cpus)


def default_ui(master: str) -> str:
    """A standalone master's web UI by Spark's default port (8080) on the master's host."""
    rest = master[len("spark://") :].split(",")[0]
    host = rest.rpartition(":")[0] if ":" in rest else rest
    return f"http://{host}:8080"
