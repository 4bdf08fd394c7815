"""A client of an MLflow tracking server's REST API over the standard library (trainform does
not depend on mlflow): the calls that exporting runs needs, with MLflow's authentication.

Everything the server sends is treated as hostile: responses are read up to a size limit,
must be MLflow's JSON shape, and ids that go into URLs must look like ids. Credentials (the
``MLFLOW_TRACKING_*`` variables, or ``user:password@`` in the URI) are sent as HTTP auth,
never followed through a redirect, and never appear in a message.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from trainform.errors import TrainformError

MAX_RESPONSE_BYTES = 8 << 20
MAX_SEARCH = 100  # runs one search returns: copies of one run, a handful at most
TIMEOUT = 30.0

_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")  # what MLflow ids look like; they go into URLs


def looks_like_id(value: str) -> bool:
    """Whether ``value`` may be an MLflow id (safe in a URL path and a search filter)."""
    return bool(_ID.match(value))


class MlflowServerError(TrainformError):
    """The MLflow server could not be reached, refused a request, or answered nonsense.
    ``uri`` is the server's URI without credentials; ``status`` the HTTP status, if any."""

    def __init__(
        self, message: str, uri: str, status: int | None = None, error_code: str | None = None
    ) -> None:
        self.uri = uri
        self.status = status
        self.error_code = error_code  # MLflow's, such as RESOURCE_DOES_NOT_EXIST
        super().__init__(message)


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
        return [f"{shown_uri(uri)!r} is not a URI ({exc})"]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            f"{shown_uri(uri)!r} is not an MLflow tracking server's URI: give "
            "http(s)://HOST[:PORT] (file and database stores are not servers)"
        ]
    if not credentials and (parts.username or parts.password):
        return [
            f"{shown_uri(uri)!r}: put no credentials in the URI (they would be written to state); "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
        ]
    return []


def shown_uri(uri: str) -> str:
    """``uri`` without its ``user:password@`` part, query or fragment (safe to show)."""
    plain = uri.split("#", 1)[0].split("?", 1)[0]
    try:
        parts = urllib.parse.urlsplit(plain)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return re.sub(r"//[^/@]*@", "//", plain)
    if not parts.netloc:
        return plain
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


class MlflowServer:
    """An MLflow tracking server reached over HTTP(S) at ``uri``. Credentials come from
    ``environ`` (``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` as Basic auth,
    else ``MLFLOW_TRACKING_TOKEN`` as a Bearer token, as MLflow's own client does) or from a
    ``user:password@`` in ``uri``. Every method blocks for at most ``timeout`` seconds per
    network operation and raises :class:`MlflowServerError`."""

    def __init__(
        self, uri: str, environ: Mapping[str, str] | None = None, timeout: float = TIMEOUT
    ) -> None:
        env = os.environ if environ is None else environ
        self.uri = shown_uri(uri)
        problems = uri_problems(uri)
        if problems:
            raise MlflowServerError(problems[0], self.uri)
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

    def error(
        self, what: str, status: int | None = None, error_code: str | None = None
    ) -> MlflowServerError:
        """An error about this server: its URI, then ``what``, with no credential in it."""
        return MlflowServerError(
            self._redact(f"MLflow server {self.uri}: {what}"), self.uri, status, error_code
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
            raise self.error(f"cannot be reached ({_reason(exc.reason)})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise self.error(f"{endpoint}: {_reason(exc)}") from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise self.error(f"{endpoint} answered more than {MAX_RESPONSE_BYTES} bytes")
        if not data.strip():
            return {}
        try:
            answer = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise self.error(
                f"{endpoint} answered something that is not MLflow's JSON: is this an "
                "MLflow tracking server?"
            )
        return answer

    def _http_error(self, endpoint: str, exc: urllib.error.HTTPError) -> MlflowServerError:
        try:
            detail = json.loads(exc.read(64 << 10))
        except (ValueError, RecursionError, OSError, http.client.HTTPException):
            detail = None  # an error page, or none: the status says enough
        code = detail.get("error_code") if isinstance(detail, dict) else None
        text = detail.get("message") if isinstance(detail, dict) else None
        said = f": {printable(str(code))}" if code else ""
        said += f": {printable(str(text))}" if text else ""
        if exc.code in (401, 403):
            hint = (
                "; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                "MLFLOW_TRACKING_TOKEN"
            )
            return self.error(
                f"{endpoint} refused the credentials (HTTP {exc.code}){hint}", exc.code
            )
        if 300 <= exc.code < 400:
            where = printable(str(exc.headers.get("Location", "")))
            return self.error(
                f"{endpoint} answered a redirect (HTTP {exc.code}) to {where!r}, which is not "
                "followed: give the URI it redirects to",
                exc.code,
            )
        return self.error(
            f"{endpoint} failed (HTTP {exc.code}){said}", exc.code, str(code) if code else None
        )

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
                except MlflowServerError as exc:  # another export created it meanwhile
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    experiment = self._experiment(name) or {}
            if experiment.get("lifecycle_stage") == "deleted":
                raise self.error(
                    f"experiment {name!r} is deleted: restore it (`mlflow experiments restore`) "
                    "or delete it for good (`mlflow gc`)"
                )
            self._experiments[name] = self._id(experiment.get("experiment_id"), "an id")
        return self._experiments[name]

    def _experiment(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.call("experiments/get-by-name", experiment_name=name)
        except MlflowServerError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return _object(found.get("experiment"))

    def find_runs(self, experiment_id: str, key: str, value: str) -> list[dict[str, Any]]:
        """The active runs of the experiment whose tag ``key`` is ``value`` (an id-like
        string), each as ``{"id": run id, "tags": {key: value}}``."""
        answer = self.call(
            "runs/search",
            {
                "experiment_ids": [experiment_id],
                "filter": f"tags.\"{key}\" = '{value}'",
                "run_view_type": "ACTIVE_ONLY",
                "max_results": MAX_SEARCH,
            },
        )
        runs = answer.get("runs", [])
        if not isinstance(runs, list):
            raise self.error("runs/search answered a malformed list of runs")
        found = []
        for run in runs:
            run = _object(run)
            info, data = _object(run.get("info")), _object(run.get("data"))
            tags = {
                str(t.get("key")): str(t.get("value"))
                for t in data.get("tags", [])
                if isinstance(t, dict)
            }
            if tags.get(key) == value:  # the server's filter is not trusted
                found.append({"id": self._id(info.get("run_id"), "a run id"), "tags": tags})
        return found

    def create_run(
        self, experiment_id: str, name: str, start_ms: int | None, tags: dict[str, str]
    ) -> tuple[str, str]:
        """A new run with ``tags``; returns its id and its artifact URI ("" if none)."""
        body: dict[str, Any] = {
            "experiment_id": experiment_id,
            "run_name": name,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
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
        if not isinstance(value, str) or not looks_like_id(value):
            raise self.error(f"answered {printable(repr(value))[:80]} as {what}")
        return value


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def printable(text: str) -> str:
    """Server text made safe to show: one line, no control characters, at most 300 chars."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text[:300] + ("..." if len(text) > 300 else "")


def _reason(reason: Any) -> str:
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "no answer in time"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return printable(str(reason))
