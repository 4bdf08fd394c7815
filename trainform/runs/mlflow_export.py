"""Exporting runs of the history to an MLflow tracking server, through MLflow's REST API over
the standard library (trainform does not depend on mlflow).

A trainform run becomes one MLflow run in the experiment named like the run's ``experiment``:
its params (for a sweep trial, its hyperparameters too), every metric point with its step and
time, tags that tie it to trainform (``trainform.run_id``, ``trainform.address``,
``trainform.fingerprint``, ``trainform.git_commit``, ``trainform.compute``,
``trainform.snapshot_id``, ``trainform.sweep``), the tags the run logged itself, its status and
times, and its collected outputs as artifacts when the server proxies artifacts.

Export is idempotent. The MLflow run is created carrying only the ``trainform.run_id`` tag, and
the tag ``trainform.exported = complete`` is set as the very last step. A run found complete is
left alone; a run found without it (an earlier export died midway) is deleted (MLflow keeps it
in its trash until ``mlflow gc``) and exported again whole, so a retry never duplicates a
metric point. Two exports of one run at once (a continuous export and ``runs export``) converge:
whoever finishes last deletes every complete copy but one.

Everything the server sends is treated as hostile: responses are read up to a size limit,
must be MLflow's JSON shape, and ids that go into URLs must look like ids. Credentials (the
``MLFLOW_TRACKING_*`` variables, or ``user:password@`` in the URI) are sent as HTTP auth and
never appear in a message.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import posixpath
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from trainform.errors import TrainformError
from trainform.providers.base import TERMINAL
from trainform.state.store import StateStore

RUN_ID_TAG = "trainform.run_id"
EXPORTED_TAG = "trainform.exported"
ENDED = (*TERMINAL, "not_started")
STATUS = {"completed": "FINISHED", "canceled": "KILLED"}  # anything else that ended: FAILED

# runs/log-batch limits as MLflow documents and enforces them (mlflow/utils/validation.py).
MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_REQUEST_BYTES = 900_000  # MLflow refuses a log-batch body over 1,000,000 bytes
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_RESPONSE_BYTES = 8 << 20
MAX_SEARCH = 100
TIMEOUT = 30.0

_KEY = re.compile(r"^[/\w.\- :]*$")  # MLflow's rule for metric, param and tag names
_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")  # what MLflow ids look like; they go into URLs
_INT64 = (-(2**63), 2**63)
_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class MlflowExportError(TrainformError):
    """The MLflow server could not be reached, refused a request, or answered nonsense.
    ``uri`` is the server's URI without credentials; ``status`` the HTTP status, if any."""

    def __init__(
        self, message: str, uri: str, status: int | None = None, error_code: str | None = None
    ) -> None:
        self.uri = uri
        self.status = status
        self.error_code = error_code  # MLflow's, such as RESOURCE_DOES_NOT_EXIST
        super().__init__(message)


@dataclass(frozen=True)
class Exported:
    """What exporting one run did. ``action``: ``exported`` (a new MLflow run), ``replaced``
    (an earlier, cut-off export was deleted and the run exported again), ``unchanged`` (it was
    exported completely before) or ``skipped`` (it has not ended). ``metrics`` counts the
    metric points sent; ``notes`` say what was left out and why."""

    run_id: str
    action: str
    experiment: str
    experiment_id: str = ""
    mlflow_run_id: str = ""
    params: int = 0
    metrics: int = 0
    artifacts: int = 0
    notes: tuple[str, ...] = ()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: they would carry the credentials elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def uri_problems(uri: str, credentials: bool = True) -> list[str]:
    """Why ``uri`` cannot be an MLflow tracking server to export to (as messages); none for
    an ``http(s)://[user:password@]host[:port][/path]`` URI. Without ``credentials`` a
    ``user:password@`` part is refused (for a URI written into configuration and state)."""
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError as exc:
        return [f"{_shown(uri)!r} is not a URI ({exc})"]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            f"{_shown(uri)!r} is not an MLflow tracking server's URI: give "
            "http(s)://HOST[:PORT] (file and database stores are not servers)"
        ]
    if not credentials and (parts.username or parts.password):
        return [
            f"{_shown(uri)!r}: put no credentials in the URI (they would be written to state); "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
        ]
    return []


def _shown(uri: str) -> str:
    """``uri`` without its ``user:password@`` part, query or fragment (safe to show)."""
    try:
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return re.sub(r"//[^/@]*@", "//", uri).split("?")[0].split("#")[0]
    host = f"[{host}]" if ":" in host else host
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path.rstrip("/"), "", ""))


class MlflowServer:
    """An MLflow tracking server reached over HTTP(S) at ``uri``. Credentials come from
    ``environ`` (``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` as Basic auth,
    else ``MLFLOW_TRACKING_TOKEN`` as a Bearer token, as MLflow's own client does) or from a
    ``user:password@`` in ``uri``. Every method blocks for at most ``timeout`` seconds per
    network operation and raises :class:`MlflowExportError`."""

    def __init__(
        self, uri: str, environ: Mapping[str, str] | None = None, timeout: float = TIMEOUT
    ) -> None:
        env = os.environ if environ is None else environ
        self.uri = _shown(uri)
        problems = uri_problems(uri)
        if problems:
            raise MlflowExportError(problems[0], self.uri)
        parts = urllib.parse.urlsplit(uri)
        self.timeout = timeout
        self._experiments: dict[str, str] = {}
        user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
        token = env.get("MLFLOW_TRACKING_TOKEN")
        if not (user and password) and not token and parts.username:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
        self._auth = ""
        if user and password is not None:
            self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif token:
            self._auth = f"Bearer {token}"
        secrets = (password, token, parts.password, self._auth.split(" ", 1)[-1])
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._opener = urllib.request.build_opener(_NoRedirect())

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, what: str, status: int | None = None) -> MlflowExportError:
        return MlflowExportError(
            self._redact(f"MLflow server {self.uri}: {what}"), self.uri, status
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | IO[bytes] | None = None,
        length: int | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request to ``path`` (below the server's URI) and return its JSON object
        answer. ``body`` may be an open binary file of ``length`` bytes: it is streamed."""
        request = urllib.request.Request(self.uri + path, data=body, method=method)
        request.add_unredirected_header("Content-Type", content_type)
        if length is not None:
            request.add_unredirected_header("Content-Length", str(length))
        if self._auth:
            request.add_unredirected_header("Authorization", self._auth)
        endpoint = path.split("?", 1)[0]
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                data = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._http_error(endpoint, exc) from None
        except urllib.error.URLError as exc:
            raise self._fail(f"cannot be reached ({_reason(exc.reason)})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._fail(f"{endpoint}: {_reason(exc)}") from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise self._fail(f"{endpoint} answered more than {MAX_RESPONSE_BYTES} bytes")
        if not data.strip():
            return {}
        try:
            answer = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise self._fail(
                f"{endpoint} answered something that is not MLflow's JSON: is this an "
                "MLflow tracking server?"
            )
        return answer

    def _http_error(self, endpoint: str, exc: urllib.error.HTTPError) -> MlflowExportError:
        try:
            detail = json.loads(exc.read(64 << 10))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError, ValueError):
            detail = None
        code = detail.get("error_code") if isinstance(detail, dict) else None
        text = detail.get("message") if isinstance(detail, dict) else None
        said = f": {_printable(str(code))}" if code else ""
        said += f": {_printable(str(text))}" if text else ""
        if exc.code in (401, 403):
            hint = (
                "; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                "MLFLOW_TRACKING_TOKEN"
            )
            return self._fail(
                f"{endpoint} refused the credentials (HTTP {exc.code}){hint}", exc.code
            )
        if 300 <= exc.code < 400:
            where = _printable(str(exc.headers.get("Location", "")))
            return self._fail(
                f"{endpoint} answered a redirect (HTTP {exc.code}) to {where!r}, which is not "
                "followed: give the URI it redirects to",
                exc.code,
            )
        failure = self._fail(f"{endpoint} failed (HTTP {exc.code}){said}", exc.code)
        failure.error_code = str(code) if code else None
        return failure

    def call(
        self, endpoint: str, body: dict[str, Any] | None = None, **query: str
    ) -> dict[str, Any]:
        """A tracking API call: POST ``body`` as JSON, or GET with ``query``."""
        path = f"/api/2.0/mlflow/{endpoint}"
        if body is None:
            return self.request("GET", path + "?" + urllib.parse.urlencode(query))
        return self.request("POST", path, json.dumps(body, allow_nan=False).encode())

    # -- experiments and runs
    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if missing. Raises if it is deleted."""
        if name not in self._experiments:
            experiment = self._experiment(name)
            if experiment is None:
                try:
                    created = self.call("experiments/create", {"name": name})
                    self._experiments[name] = self._id(created.get("experiment_id"), "an id")
                    return self._experiments[name]
                except MlflowExportError as exc:  # another export created it meanwhile
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    experiment = self._experiment(name) or {}
            if experiment.get("lifecycle_stage") == "deleted":
                raise self._fail(
                    f"experiment {name!r} is deleted: restore it (`mlflow experiments restore`) "
                    "or delete it for good (`mlflow gc`)"
                )
            self._experiments[name] = self._id(experiment.get("experiment_id"), "an id")
        return self._experiments[name]

    def _experiment(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.call("experiments/get-by-name", experiment_name=name)
        except MlflowExportError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return _object(found.get("experiment"))

    def find_runs(self, experiment_id: str, run_id: str) -> list[dict[str, Any]]:
        """The active MLflow runs of the experiment tagged with trainform run ``run_id``, each
        as ``{"id", "tags"}``."""
        answer = self.call(
            "runs/search",
            {
                "experiment_ids": [experiment_id],
                "filter": f"tags.\"{RUN_ID_TAG}\" = '{run_id}'",
                "run_view_type": "ACTIVE_ONLY",
                "max_results": MAX_SEARCH,
            },
        )
        runs = answer.get("runs", [])
        if not isinstance(runs, list):
            raise self._fail("runs/search answered a malformed list of runs")
        found = []
        for run in runs:
            run = _object(run)
            info, data = _object(run.get("info")), _object(run.get("data"))
            tags = {
                str(t.get("key")): str(t.get("value"))
                for t in data.get("tags", [])
                if isinstance(t, dict)
            }
            if tags.get(RUN_ID_TAG) == run_id:  # the server's filter is not trusted
                found.append({"id": self._id(info.get("run_id"), "a run id"), "tags": tags})
        return found

    def create_run(
        self, experiment_id: str, name: str, start_ms: int | None, run_id: str
    ) -> tuple[str, str]:
        """A new MLflow run tagged with ``run_id``; returns its id and artifact URI."""
        body: dict[str, Any] = {
            "experiment_id": experiment_id,
            "run_name": name,
            "tags": [{"key": RUN_ID_TAG, "value": run_id}],
        }
        if start_ms is not None:
            body["start_time"] = start_ms
        info = _object(_object(self.call("runs/create", body).get("run")).get("info"))
        artifact_uri = info.get("artifact_uri")
        return self._id(info.get("run_id"), "a run id"), (
            artifact_uri if isinstance(artifact_uri, str) else ""
        )

    def upload(self, artifact_path: str, file: Path) -> None:
        """PUT a file through the server's artifact proxy at ``artifact_path`` (the part of
        an ``mlflow-artifacts:`` URI after the scheme, with the file's relative path),
        streaming it."""
        with file.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            self.request(
                "PUT",
                "/api/2.0/mlflow-artifacts/artifacts/" + artifact_path,
                stream,
                size,
                "application/octet-stream",
            )

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """Where the MLflow UI shows a run."""
        return f"{self.uri}/#/experiments/{experiment_id}/runs/{run_id}"

    def _id(self, value: Any, what: str) -> str:
        if not isinstance(value, str) or not _ID.match(value):
            raise self._fail(f"answered {_printable(repr(value))[:80]} as {what}")
        return value


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _printable(text: str) -> str:
    """Server text made safe to show: one line, no control characters, at most 300 chars."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text[:300] + ("..." if len(text) > 300 else "")


def _reason(reason: Any) -> str:
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "no answer in time"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return _printable(str(reason))


def _ms(stamp: Any) -> int | None:
    """A history time (ISO 8601) in milliseconds since the epoch, or None."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _key_problem(key: str) -> str:
    """Why MLflow would refuse ``key`` as a metric, param or tag name; "" if it accepts it."""
    if not key or len(key) > MAX_KEY:
        return f"MLflow takes names of 1 to {MAX_KEY} characters"
    if not _KEY.match(key):
        return "MLflow takes only letters, digits, _ - . : / and spaces in names"
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith(("..", "/")):
        return "MLflow takes no name that reads as another path (//, /./, .., a leading /)"
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _entries(
    values: Mapping[str, Any], what: str, limit: int, notes: list[str]
) -> list[dict[str, str]]:
    """``values`` as MLflow key/value entries: names MLflow refuses left out, values over
    ``limit`` characters cut to it, each with a note."""
    out = []
    for key, value in values.items():
        problem = _key_problem(key)
        if problem:
            notes.append(f"{what} {_printable(key)[:80]!r} not exported: {problem}")
            continue
        text = _text(value)
        if len(text) > limit:
            notes.append(f"{what} {key!r} cut to MLflow's {limit} characters")
            text = text[:limit]
        out.append({"key": key, "value": text})
    return out


def _metric(point: Mapping[str, Any], default_ms: int) -> dict[str, Any] | None:
    """A trainform metric point as MLflow's Metric, or None if it has no value. Non-finite
    values are sent as MLflow's JSON spells them ("NaN", "Infinity", "-Infinity")."""
    value = point.get("value")
    nonfinite = point.get("nonfinite")
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        sent: float | str = float(value)
    elif isinstance(value, float):
        sent = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    elif value is None and nonfinite in _NONFINITE:
        sent = _NONFINITE[str(nonfinite)]
    else:
        return None
    step, when = point.get("step"), point.get("time")
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
        when = default_ms / 1000
    if not isinstance(step, int) or isinstance(step, bool) or not _INT64[0] <= step < _INT64[1]:
        step = 0  # MLflow's default step; regex-scraped points may have none
    return {
        "key": point["name"],
        "value": sent,
        "timestamp": max(0, min(int(when * 1000), _INT64[1] - 1)),
        "step": step,
    }


def _batches(items: list[dict[str, Any]], count: int) -> Iterator[list[dict[str, Any]]]:
    """``items`` in lists of at most ``count`` whose JSON stays under MAX_REQUEST_BYTES."""
    batch: list[dict[str, Any]] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(item).encode()) + 1
        if batch and (len(batch) >= count or size + item_size > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def sweep_trial(store: StateStore, run: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The sweep id and hyperparameters of a run that is a sweep's trial (its address is
    ``sweep.NAME[i]``, the controller records the trials in the sweep's history), or None."""
    address = str(run.get("address") or "")
    if not re.search(r"(^|\.)sweep\.[^.\[]+\[\d+\]$", address):
        return None
    for sweep in store.sweeps(address.rsplit("[", 1)[0]):
        for trial in sweep["record"].get("trials") or []:
            if isinstance(trial, dict) and trial.get("run_id") == run["id"]:
                params = trial.get("params")
                return str(sweep["id"]), dict(params) if isinstance(params, dict) else {}
    return None


def _tags(run: Mapping[str, Any], sweep_id: str | None) -> dict[str, Any]:
    record = run["record"]
    git = record.get("git") if isinstance(record.get("git"), dict) else {}
    ours = {
        RUN_ID_TAG: run["id"],
        "trainform.address": run.get("address"),
        "trainform.fingerprint": run.get("fingerprint"),
        "trainform.git_commit": git.get("commit"),
        "mlflow.source.git.commit": git.get("commit"),  # the MLflow UI shows this one
        "trainform.compute": record.get("compute_address") or record.get("compute_provider"),
        "trainform.snapshot_id": record.get("snapshot_id"),
        "trainform.sweep": sweep_id,
        "trainform.status": run.get("status"),
        "mlflow.runName": run["id"],
    }
    logged = record.get("logged_tags")  # what the script tagged its run with
    tags = {
        str(k): v
        for k, v in (logged.items() if isinstance(logged, dict) else ())
        if not str(k).startswith("trainform.")  # ours: trainform.exported above all
    }
    tags.update({k: v for k, v in ours.items() if v is not None})
    return tags


def _artifacts(server: MlflowServer, artifact_uri: str, outputs: Any, notes: list[str]) -> int:
    """Upload the files under the run's collected outputs folder; returns how many. Links
    and special files are not followed or sent (notes say so)."""
    if not outputs or not Path(str(outputs)).is_dir():
        notes.append(
            f"outputs not exported: no collected outputs folder on this machine "
            f"({outputs or 'none recorded'})"
        )
        return 0
    if not artifact_uri.startswith("mlflow-artifacts:"):
        scheme = artifact_uri.split(":", 1)[0] or "no URI"
        notes.append(
            f"outputs not exported: the server stores artifacts at {scheme}: itself, and "
            "takes uploads only through its artifact proxy (`mlflow server` with "
            "--serve-artifacts, the default since MLflow 2)"
        )
        return 0
    # mlflow-artifacts:/1/RUN/artifacts (or mlflow-artifacts://host/...: this server anyway)
    base = urllib.parse.urlsplit(artifact_uri).path.strip("/")
    if not base or any(not _ID.match(part) for part in base.split("/")):
        notes.append(f"outputs not exported: unexpected artifact URI {_printable(artifact_uri)!r}")
        return 0
    root = Path(str(outputs))
    count = 0
    for folder, dirs, files in os.walk(root):  # never into a linked folder
        dirs.sort()
        linked = [d for d in dirs if Path(folder, d).is_symlink()]
        for name in sorted(files) + linked:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file():
                notes.append(f"output {relative!r} not exported: not a regular file")
                continue
            if "#" in relative:
                notes.append(f"output {relative!r} not exported: MLflow takes no '#' in paths")
                continue
            try:
                quoted = "/".join(urllib.parse.quote(p, safe="") for p in relative.split("/"))
            except UnicodeEncodeError:
                notes.append(f"output {relative!r} not exported: its name is not UTF-8")
                continue
            try:
                server.upload(f"{base}/{quoted}", path)
            except MlflowExportError as exc:
                if exc.status != 400:  # only a refusal of this one file lets the others go
                    raise
                notes.append(f"output {relative!r} not exported: the server refused it ({exc})")
                continue
            count += 1
    return count


def export_run(server: MlflowServer, store: StateStore, run: Mapping[str, Any]) -> Exported:
    """Export one run of the history (a row of ``store.runs()``) to ``server``; idempotent
    (see the module's docstring). Blocks on the network; raises MlflowExportError."""
    experiment = str(run.get("experiment") or "Default")
    if run.get("status") not in ENDED:
        return Exported(
            run["id"],
            "skipped",
            experiment,
            notes=(f"not exported: it has not ended ({run.get('status')}); export it once it has",),
        )
    if not _ID.match(str(run["id"])):
        raise server._fail(f"run id {str(run['id'])!r} cannot be searched for in MLflow")
    experiment_id = server.experiment_id(experiment)
    found = server.find_runs(experiment_id, run["id"])
    if any(r["tags"].get(EXPORTED_TAG) == "complete" for r in found):
        kept = _keep_one(server, found)
        return Exported(run["id"], "unchanged", experiment, experiment_id, kept)
    for stale in found:  # cut off midway: its metrics would be sent twice
        server.call("runs/delete", {"run_id": stale["id"]})

    record = run["record"]
    notes: list[str] = []
    start = _ms(record.get("started")) or _ms(run.get("created"))
    end = _ms(run.get("finished"))
    mlflow_run, artifact_uri = server.create_run(experiment_id, run["id"], start, run["id"])
    trial = sweep_trial(store, run)
    params = dict(record.get("params") or {})
    params.update(trial[1] if trial else {})  # the sweep's choice is what the trial ran with
    param_entries = _entries(params, "param", MAX_PARAM_VALUE, notes)
    tag_entries = _entries(_tags(run, trial[0] if trial else None), "tag", MAX_TAG_VALUE, notes)
    default_ms = end or start or 0
    metrics: list[dict[str, Any]] = []
    refused: dict[str, str] = {}
    for point in store.metrics(run["id"]):
        name = str(point.get("name"))
        problem = refused.get(name)
        if problem is None:
            problem = refused[name] = _key_problem(name)
            if problem:
                notes.append(f"metric {_printable(name)[:80]!r} not exported: {problem}")
        metric = None if problem else _metric(point, default_ms)
        if metric is not None:
            metrics.append(metric)
    for kind, entries, count in (
        ("params", param_entries, MAX_PARAMS),
        ("tags", tag_entries, MAX_TAGS),
        ("metrics", metrics, MAX_METRICS),
    ):
        for batch in _batches(entries, count):
            server.call("runs/log-batch", {"run_id": mlflow_run, kind: batch})
    artifacts = _artifacts(server, artifact_uri, record.get("outputs_path"), notes)
    update: dict[str, Any] = {"run_id": mlflow_run, "status": STATUS.get(run["status"], "FAILED")}
    if end is not None:
        update["end_time"] = end
    server.call("runs/update", update)
    server.call("runs/set-tag", {"run_id": mlflow_run, "key": EXPORTED_TAG, "value": "complete"})
    # Another export of this run may have finished meanwhile: keep one complete copy.
    kept = _keep_one(server, server.find_runs(experiment_id, run["id"])) or mlflow_run
    return Exported(
        run["id"],
        "replaced" if found else "exported",
        experiment,
        experiment_id,
        kept,
        len(param_entries),
        len(metrics),
        artifacts,
        tuple(notes),
    )


def _keep_one(server: MlflowServer, found: list[dict[str, Any]]) -> str:
    """Delete every completely exported copy of a run but the one with the smallest id (the
    rule every export follows, so concurrent ones converge on the same); return its id."""
    complete = sorted(r["id"] for r in found if r["tags"].get(EXPORTED_TAG) == "complete")
    for extra in complete[1:]:
        server.call("runs/delete", {"run_id": extra})
    return complete[0] if complete else ""


def export_runs(
    server: MlflowServer, store: StateStore, runs: Iterable[Mapping[str, Any]]
) -> Iterator[Exported]:
    """Export each run in turn, yielding what was done as it is done; stops at the first
    MlflowExportError (raised from the iteration)."""
    for run in runs:
        yield export_run(server, store, run)


def mirror_run(store: StateStore, workspace: str, address: str, run_id: str) -> list[str]:
    """Continuous export: if workspace ``workspace`` (an address) sets
    ``mlflow_tracking_uri``, export run ``run_id`` (of run address ``address``) there. Never raises for the export: a
    failure, or what was left out, comes back as warnings for the caller to show (the next
    ``trainform runs export`` catches up). Costs one state read when the attribute is unset."""
    if workspace == "default":  # no workspace block: nothing can set the attribute
        return []
    resource = store.resources().get(workspace)
    uri = resource.attributes.get("mlflow_tracking_uri") if resource is not None else None
    if not isinstance(uri, str) or not uri:
        return []
    run = next((r for r in store.runs(address) if r["id"] == run_id), None)
    if run is None:
        return []
    try:
        done = export_run(MlflowServer(uri, timeout=10.0), store, run)
    except TrainformError as exc:
        return [
            f"run {run_id} was not exported to MLflow ({exc}); `trainform runs export "
            f"--mlflow {_shown(uri)} {run_id}` retries"
        ]
    return [f"MLflow export of {run_id}: {note}" for note in done.notes]
