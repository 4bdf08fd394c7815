"""MLflow inside runs: the launcher points MLflow at a file store in the run's folder
(``RUN_DIR/mlruns``) and reads it while the run runs. Standard library only, Python >= 3.8
(runs on targets).

The store's layout (MLflow 2.x and 3.x file stores)::

    mlruns/<experiment id>/meta.yaml
    mlruns/<experiment id>/<run id>/meta.yaml           run_id, run_name, start_time, status
    mlruns/<experiment id>/<run id>/metrics/<key>       "<timestamp ms> <value> <step>" lines
    mlruns/<experiment id>/<run id>/params/<key>        the value
    mlruns/<experiment id>/<run id>/tags/<key>          the value
    mlruns/<experiment id>/<run id>/artifacts/...       (MLflow 2 logged models: a folder
                                                          with an MLmodel file)
    mlruns/<experiment id>/models/<model id>/meta.yaml  MLflow 3 logged models: name,
    mlruns/<experiment id>/models/<model id>/artifacts/ source_run_id; MLmodel inside

A key with ``/`` is a subfolder. What the script wrote there is hostile input: files are read
with limits, never through a symbolic link, and garbage is skipped.

What becomes the run's (see :mod:`trainform.capture` for the lines):

- the first top-level MLflow run is the run's own: its metrics, params and tags keep their
  names; every other MLflow run (nested runs, further ``start_run`` calls) has them named
  ``<its run name>/<name>`` (``-2``, ``-3`` added to a name met before);
- tags named ``mlflow.*`` are MLflow's bookkeeping and left out, except :data:`KEPT_TAGS`;
- each metric keeps its first :data:`FULL_POINTS` points, then one in :data:`SAMPLE_EVERY`
  and its last one; MLflow 3 repeats points when a model is logged: repeats are dropped;
- when the run has ended, artifacts are moved (renamed, never copied) into the run's outputs:
  ``mlflow/runs/<run name>/`` for each MLflow run, ``mlflow/models/<model name>/`` for MLflow 3
  logged models, and each logged model becomes a ``model`` line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trainform.capture import Source, Stream

STORE_DIR = "mlruns"  # in the run's folder
OUTPUT_DIR = "mlflow"  # in the run's outputs
POLL_SECONDS = 0.2  # the launcher calls poll at least this often
FILE_BUDGET = 1 << 20  # bytes read of one metric file per poll (finish reads the rest)
POLL_BUDGET = 8 << 20  # bytes read of metric files per poll
FULL_POINTS = 100_000  # points of one metric kept in full; past that, 1 in SAMPLE_EVERY
SAMPLE_EVERY = 100
MAX_RUNS = 1000  # MLflow runs followed
MAX_KEYS = 2000  # metric, param and tag names followed per MLflow run
MAX_DEPTH = 16  # folder levels of a key ("a/b/c")
MAX_TEXT = 64 << 10  # bytes read of a param, tag, meta.yaml or MLmodel
MAX_LINE = 200  # longer metric lines are garbage
MAX_WALK = 100_000  # entries looked at in one moved artifacts folder
KEPT_TAGS = frozenset(
    {
        "mlflow.runName",
        "mlflow.note.content",
        "mlflow.source.git.commit",
        "mlflow.source.git.branch",
        "mlflow.source.git.repoURL",
    }
)
ENDED = frozenset({"3", "4", "5"})  # MLflow run status FINISHED, FAILED, KILLED


def setup(
    env: dict[str, str],
    run_dir: Path,
    outputs: Path,
    experiment: str,
    version: str,
    stream: Stream,
    note: Callable[[str], None],
) -> MlflowStore | None:
    """Point MLflow (``version``) at a file store inside ``run_dir`` through ``env`` and return
    the source that reads it. When the user set ``MLFLOW_TRACKING_URI`` (``env`` holds the
    run's variables), it is left alone, the run's log says so once (scheme and host only: the
    URI may carry credentials), and None is returned."""
    uri = env.get("MLFLOW_TRACKING_URI")
    if uri:
        note(
            f"MLflow {version}: MLFLOW_TRACKING_URI is set ({where(uri)}): MLflow logs there, "
            "and trainform reads nothing from MLflow for this run"
        )
        return None
    root = run_dir / STORE_DIR
    # A percent-encoded file URI: paths with spaces work with MLflow 2 and 3.
    env["MLFLOW_TRACKING_URI"] = root.absolute().as_uri()
    # MLflow 3 refuses file stores without it (its default, sqlite, needs sqlalchemy).
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    if not env.get("MLFLOW_EXPERIMENT_NAME") and not env.get("MLFLOW_EXPERIMENT_ID"):
        env["MLFLOW_EXPERIMENT_NAME"] = experiment
    note(f"MLflow {version}: what the script logs is captured")
    return MlflowStore(root, outputs, stream, note)


def where(uri: str) -> str:
    """``scheme://host:port`` of a tracking URI: never its user, password, path or query."""
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "a URI trainform cannot read"
    if uri in ("databricks", "databricks-uc"):  # MLflow's names for a Databricks profile
        return uri
    if not parts.scheme:
        return "a local path"
    if not host:
        return f"{parts.scheme}:"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


class _Series:
    """One metric file of one MLflow run, read up to ``offset``."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.offset = 0
        self.count = 0  # distinct points met
        self.seen: set[int] = set()  # hashes of the lines kept: MLflow 3 repeats lines
        self.held: tuple[float, int | None, float] | None = None  # last point not kept


class _Run:
    """One MLflow run found in the store."""

    def __init__(self, path: Path, meta: dict[str, str], order: int) -> None:
        self.path = path
        self.run_id = meta.get("run_id", "")
        self.name = meta.get("run_name") or self.run_id
        self.start = _int(meta.get("start_time"))
        self.order = order
        self.prefix = ""
        self.ended = False  # MLflow says it ended, and it was read after that
        self.meta_seen = (-2, -2)  # meta.yaml when its status was last read: not yet
        self.series: dict[str, _Series] = {}
        self.named: dict[tuple[str, str], tuple[int, int]] = {}  # (kind, name): signature
        self.full = False  # MAX_KEYS reached (noted once)


class MlflowStore(Source):
    """The run's MLflow file store (``root``), read as it grows into the run's metrics stream;
    artifacts moved into ``outputs`` when the run has ended. Never raises: a failure is noted
    once in the run's log and switches the source off."""

    def __init__(
        self, root: Path, outputs: Path, stream: Stream, note: Callable[[str], None]
    ) -> None:
        self.root = root
        self.outputs = outputs
        self.stream = stream
        self.note = note
        self.runs: dict[str, _Run] = {}  # by run folder
        self.own: _Run | None = None
        self.due = 0.0
        self.turn = 0
        self.garbage = 0
        self.off = False
        self.noted: set[str] = set()

    # -- the Source protocol
    def poll(self, now: float) -> None:
        """Read what is new, at most every :data:`POLL_SECONDS` and :data:`POLL_BUDGET` bytes."""
        if self.off or now < self.due:
            return
        self.due = now + POLL_SECONDS
        self._guarded(self._read, False)

    def finish(self) -> None:
        """Read the rest, then move artifacts into the outputs and list logged models."""
        if self.off:
            return
        self._guarded(self._read, True)
        if self.off:
            return
        self._guarded(self._collect)
        skipped = self.garbage
        if skipped:
            self.note(f"MLflow: skipped {skipped} unreadable line(s) in metric files")

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
            self.stream.flush()
        except Exception as exc:  # a source never stops the run
            self.off = True
            self.note(f"MLflow capture stopped: {type(exc).__name__}: {exc}")

    def _once(self, key: str, message: str) -> None:
        if key not in self.noted:
            self.noted.add(key)
            self.note(message)

    # -- reading
    def _read(self, final: bool) -> None:
        if not _is_dir(self.root):
            if os.path.islink(self.root):
                self._once("root", f"MLflow: {self.root} is a symbolic link: not read")
            return
        self._discover()
        runs = sorted(self.runs.values(), key=lambda r: r.order)
        active: list[_Run] = []
        ended: list[_Run] = []
        for run in runs:
            # meta.yaml is looked at before the files are read: what was logged before a run
            # ended is read in this poll, then the run is only read again at the finish.
            signature = _signature(run.path / "meta.yaml")
            if signature != run.meta_seen:
                run.meta_seen = signature
                if _meta(run.path / "meta.yaml").get("status") in ENDED:
                    ended.append(run)
                else:
                    run.ended = False
            elif run.ended and not final:
                continue
            active.append(run)
            self._named(run, "param", "params")
            self._named(run, "tag", "tags")
            self._list_metrics(run)
        self._read_metrics(active, final)
        for run in ended:
            run.ended = True

    def _discover(self) -> None:
        """New MLflow runs: folders of experiment folders with a readable meta.yaml."""
        found: list[_Run] = []
        for experiment in _dirs(self.root):
            for folder in _dirs(experiment):
                key = str(folder)
                if key in self.runs:
                    continue
                meta = _meta(folder / "meta.yaml")
                if not meta.get("run_id"):  # not a run (models/), or meta.yaml half written
                    continue
                if len(self.runs) >= MAX_RUNS:
                    self._once("runs", f"MLflow: more than {MAX_RUNS} runs; the rest are left out")
                    return
                run = _Run(folder, meta, len(self.runs))
                tag = _text(folder / "tags" / "mlflow.runName")  # exact, unlike YAML
                if tag:
                    run.name = tag
                self.runs[key] = run
                found.append(run)
        if not found:
            return
        if self.own is None:
            # The earliest run is top-level: a nested run needs its parent to exist first.
            self.own = min(found, key=lambda r: (r.start, r.order))
        taken = {r.prefix for r in self.runs.values() if r not in found}
        for run in sorted(found, key=lambda r: (r.start, r.order)):
            if run is self.own:
                continue
            run.prefix = _unique(run.name.strip() or run.run_id, lambda p: p + "/" in taken) + "/"
            taken.add(run.prefix)

    def _named(self, run: _Run, kind: str, folder: str) -> None:
        """Params or tags of ``run``: new or changed files, each value read once per change."""
        for name, path, signature in _keys(run.path / folder):
            if kind == "tag" and name.startswith("mlflow.") and name not in KEPT_TAGS:
                continue
            key = (kind, name)
            if run.named.get(key) == signature:
                continue
            if key not in run.named and not self._room(run):
                return
            run.named[key] = signature
            value = _text(path)
            if value is None:
                continue
            if kind == "param":
                self.stream.param(run.prefix + name, value, "mlflow")
            else:
                self.stream.tag(run.prefix + name, value, "mlflow")

    def _list_metrics(self, run: _Run) -> None:
        for name, path, _ in _keys(run.path / "metrics"):
            if name not in run.series:
                if not self._room(run):
                    return
                run.series[name] = _Series(path, run.prefix + name)

    def _room(self, run: _Run) -> bool:
        if len(run.series) + len(run.named) < MAX_KEYS:
            return True
        if not run.full:
            run.full = True
            self.note(f"MLflow run {run.name}: more than {MAX_KEYS} names; the rest left out")
        return False

    def _read_metrics(self, runs: list[_Run], final: bool) -> None:
        series = [s for r in runs for s in r.series.values()]
        if not series:
            return
        # Start where the last poll did, so one busy metric cannot starve the others.
        self.turn = (self.turn + 1) % len(series)
        budget = POLL_BUDGET
        for s in series[self.turn :] + series[: self.turn]:
            if budget <= 0 and not final:
                break
            budget -= self._read_series(s, final)
            if final and s.held is not None:
                when, step, value = s.held
                s.held = None
                self.stream.metric(s.name, value, step, when, "mlflow")

    def _read_series(self, s: _Series, final: bool) -> int:
        """New complete lines of one metric file; returns how many bytes were read."""
        try:
            size = os.lstat(s.path).st_size  # stat before read: most polls stop here
        except OSError:
            return 0
        if size < s.offset:  # not MLflow's doing (it only appends): start again after it
            s.offset = size
        if size == s.offset:
            return 0
        read = 0
        while size > s.offset:
            chunk = _read_at(s.path, s.offset, FILE_BUDGET)
            if not chunk:
                break
            end = chunk.rfind(b"\n") + 1
            if end == 0:
                if len(chunk) < FILE_BUDGET:  # a line being written: the next poll has it
                    break
                end = len(chunk)  # a megabyte without a newline: garbage
                self.garbage += 1
            else:
                for line in chunk[:end].split(b"\n"):
                    self._take(s, line.strip())
            s.offset += end
            read += end
            if not final:
                break
        return read

    def _take(self, s: _Series, line: bytes) -> None:
        if not line:
            return
        key = hash(line)
        if key in s.seen:
            return
        point = _point(line)
        if point is None:
            self.garbage += 1
            return
        s.count += 1
        if s.count <= FULL_POINTS or s.count % SAMPLE_EVERY == 0:
            s.seen.add(key)
            s.held = None
            self.stream.metric(s.name, point[2], point[1], point[0], "mlflow")
        else:
            s.held = point
            self._once(
                "sampled:" + s.name,
                f"MLflow metric {s.name}: more than {FULL_POINTS} points; "
                f"from here on 1 in {SAMPLE_EVERY} is kept, and the last",
            )

    # -- when the run has ended: artifacts and models
    def _collect(self) -> None:
        if not _is_dir(self.root):
            return
        base = self._output_folder()
        if base is None:
            return
        moved = 0
        for run in sorted(self.runs.values(), key=lambda r: r.order):
            source = run.path / "artifacts"
            if not _is_dir(source) or not any(True for _ in os.scandir(source)):
                continue
            dest = self._move(source, base / "runs", run.name)
            if dest is None:
                continue
            moved += 1
            for folder, flavors in self._tidy(dest):
                name = folder.relative_to(dest).as_posix()
                if name == ".":
                    name = "model"
                self.stream.model(run.prefix + name, self._relative(folder), flavors, "mlflow")
        by_id = {r.run_id: r for r in self.runs.values()}
        for experiment in _dirs(self.root):
            for folder in _dirs(experiment / "models"):
                meta = _meta(folder / "meta.yaml")
                source = folder / "artifacts"
                if not meta.get("model_id") or not _is_dir(source):
                    continue
                name = meta.get("name") or meta["model_id"]
                dest = self._move(source, base / "models", name)
                if dest is None:
                    continue
                moved += 1
                self._tidy(dest)
                owner = by_id.get(meta.get("source_run_id", ""))
                self.stream.model(
                    (owner.prefix if owner else "") + name,
                    self._relative(dest),
                    _flavors(dest / "MLmodel"),
                    "mlflow",
                )
        said = [f"artifacts moved to {self._relative(base)}/ in the outputs"] if moved else []
        naming = self._naming()
        if naming:
            said.append(naming)
        if said:
            self.note("MLflow: " + "; ".join(said))

    def _naming(self) -> str:
        others = [r.prefix for r in sorted(self.runs.values(), key=lambda r: r.order) if r.prefix]
        if not others or self.own is None:
            return ""
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        return (
            f"MLflow run {self.own.name!r} is this run's, the other runs' names start "
            f"with their run name: {shown}"
        )

    def _output_folder(self) -> Path | None:
        """``outputs/mlflow`` made (no symbolic link on the way), or None and a note."""
        base = self.outputs / OUTPUT_DIR
        run_dir = self.root.parent
        try:
            above = [run_dir / p for p in self.outputs.relative_to(run_dir).parents][::-1]
        except ValueError:
            above = []
        for folder in (*above[1:], self.outputs, base):
            if not self._real_folder(folder):
                return None
        return base

    def _real_folder(self, folder: Path) -> bool:
        """``folder`` is a folder (made if missing), not a link; a note if not."""
        if not os.path.lexists(folder):
            folder.mkdir()
        if _is_dir(folder):
            return True
        self._once("outputs", f"MLflow: {folder} is not a folder: artifacts left in {self.root}")
        return False

    def _move(self, source: Path, parent: Path, name: str) -> Path | None:
        if not self._real_folder(parent):
            return None
        dest = parent / _unique(_folder_name(name), lambda n: os.path.lexists(parent / n))
        try:
            os.rename(source, dest)  # a rename: a 500 MB artifact is not copied
        except OSError as exc:
            self.note(f"MLflow: could not move {source} to {dest}: {exc.strerror}")
            return None
        return dest

    def _tidy(self, folder: Path) -> list[tuple[Path, list[str]]]:
        """Drop symbolic links from a moved artifacts folder (MLflow never makes them: the
        script did) and find logged models in it: folders with an MLmodel file."""
        models: list[tuple[Path, list[str]]] = []
        links = 0
        seen = 0
        for top, dirs, files in os.walk(folder):
            seen += len(dirs) + len(files)
            if seen > MAX_WALK:
                self._once("walk", f"MLflow: {folder} holds more than {MAX_WALK} entries")
                break
            here = Path(top)
            for name in list(dirs) + files:
                if os.path.islink(here / name):
                    os.unlink(here / name)
                    links += 1
                    if name in dirs:
                        dirs.remove(name)
            if "MLmodel" in files and os.path.isfile(here / "MLmodel"):
                models.append((here, _flavors(here / "MLmodel")))
        if links:
            self.note(f"MLflow: left out {links} symbolic link(s) in {folder}")
        return models

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.outputs).as_posix()


# -- reading files without following links


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _dirs(path: Path) -> list[Path]:
    """Real folders in ``path`` (no links, no hidden ones such as .trash), sorted."""
    try:
        with os.scandir(path) as entries:
            return sorted(
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            )
    except OSError:
        return []


def _signature(path: Path) -> tuple[int, int]:
    try:
        st = os.lstat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _keys(folder: Path) -> list[tuple[str, Path, tuple[int, int]]]:
    """The regular files under ``folder`` as (key, path, (size, mtime)): a key with "/" is a
    subfolder. Links are left out."""
    found: list[tuple[str, Path, tuple[int, int]]] = []
    pending = [(folder, "", 0)]
    while pending and len(found) <= MAX_KEYS:
        path, prefix, depth = pending.pop()
        try:
            with os.scandir(path) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        if depth < MAX_DEPTH:
                            pending.append((Path(e.path), prefix + e.name + "/", depth + 1))
                    elif e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        found.append((prefix + e.name, Path(e.path), (st.st_size, st.st_mtime_ns)))
        except OSError:
            continue
    return sorted(found)


def _read_at(path: Path, offset: int, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of a regular file from ``offset``; None for a link (never
    followed), a FIFO or no file."""
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _text(path: Path) -> str | None:
    data = _read_at(path, 0, MAX_TEXT)
    return None if data is None else data.decode("utf-8", "replace")


def _meta(path: Path) -> dict[str, str]:
    """The top-level ``key: value`` scalars of a meta.yaml (what MLflow writes: no nesting
    that matters, values plain or quoted)."""
    out: dict[str, str] = {}
    text = _text(path) or ""
    for line in text.splitlines():
        if not line or line[0] in " \t#-" or ": " not in line + " ":
            continue
        key, _, value = line.partition(":")
        out[key.strip()] = _scalar(value.strip())
    return out


def _scalar(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _flavors(path: Path) -> list[str]:
    """The flavor names of an MLmodel file: the keys under its ``flavors:``."""
    found: list[str] = []
    inside = False
    for line in (_text(path) or "").splitlines():
        if line and not line[0].isspace():
            inside = line.rstrip() == "flavors:"
        elif inside and line.startswith("  ") and line[2:3].strip() and ":" in line:
            found.append(line[2:].split(":", 1)[0].strip())
    return found[:20]


def _point(line: bytes) -> tuple[float, int | None, float] | None:
    """(time in seconds, step, value) of a metric line "<ms> <value> [<step>]", or None.
    MLflow 3 may add the model id and the dataset's name and digest after the step
    (autolog's training metrics: "<ms> <value> <step> dataset 5cba2f89"): they are ignored."""
    if len(line) > MAX_LINE:
        return None
    parts = line.split()
    if not 2 <= len(parts) <= 6:
        return None
    try:
        when = int(parts[0]) / 1000
        value = float(parts[1])
        step = int(parts[2]) if len(parts) >= 3 else 0
    except (ValueError, OverflowError):
        return None
    return when, step, value


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return 0


def _unique(name: str, taken: Callable[[str], bool]) -> str:
    """``name``, or ``name-2``, ``name-3``... the first not ``taken``."""
    candidate, n = name, 1
    while taken(candidate):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _folder_name(name: str) -> str:
    """A run or model name as one folder name: no "/", not hidden, not too long."""
    clean = "".join("_" if c in "/\\\0" else c for c in name).strip()[:100]
    return clean if clean and not clean.startswith(".") else "_" + clean
