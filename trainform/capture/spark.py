"""A Spark driver's application id and web UI address, found in its output while it runs.

The launcher runs a spark compute's run as ``spark-submit`` in client mode, so the driver's
log (Spark's log4j lines on stderr) is the run's output. It names the application and the UI:

    ... INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-2026...-0001
    ... INFO YarnClientImpl: Submitted application application_1700000000000_0001
    ... INFO Utils: Successfully started service 'SparkUI' on port 4040.
    ... INFO SparkUI: Bound SparkUI to 0.0.0.0, and started at http://head:4040   (Spark 3)
    ... INFO NettyBlockTransferService: Server created on 10.0.0.5:37079

A local master (``local[N]``) logs no application id: once the UI's port is known, the driver's
own REST API (``/api/v1/applications`` on this host) is asked for it, by a thread (the driver
may take tens of seconds to answer, and the launcher's loop must not wait on it), every
ASK_EVERY seconds for ASK_SECONDS at most.

What is found is handed to ``found`` (the launcher writes it into ``status.json`` as ``spark``:
``{"app_id", "ui"}``), so ``runs show`` and cancel know the application. The output is the
script's and Spark's, so it is hostile input: ids and addresses must match strict patterns.
Standard library only, Python >= 3.8: this runs on targets.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from trainform.capture import Source
from trainform.capture.logs import Lines

_APP_ID = re.compile(
    r"(?:app ID|Submitted application) ((?:app|application)[-_][0-9]{1,20}[-_][0-9]{1,20})\b"
)
_UI_PORT = re.compile(r"Successfully started service 'SparkUI' on port ([0-9]{1,5})\b")
_UI_URL = re.compile(r"Bound SparkUI to \S+ and started at (https?://[A-Za-z0-9.:\[\]-]{1,300})")
_DRIVER_HOST = re.compile(r"Server created on ([A-Za-z0-9.-]{1,253}|\[[0-9a-fA-F:]{2,45}\]):[0-9]")
_REST_ID = re.compile(r"(?:local|app|application)[-_][0-9]{1,20}(?:[-_][0-9]{1,20})?")
MAX_LINE = 4096  # longer lines are cut; Spark's own lines are short
ASK_EVERY = 2.0  # seconds between questions to the driver's REST API
ASK_SECONDS = 180.0  # how long a local driver's REST API is asked for its id
ASK_TIMEOUT = 5.0  # seconds one question may take
MAX_FAILURE = 300  # characters of an exception line kept for the status message


class SparkApp(Source):
    """Finds the application id and UI address in the driver's output (see the module)."""

    def __init__(self, found: Callable[[dict[str, Any]], object]) -> None:
        self.found = found
        self.lines = Lines(MAX_LINE)
        self.app_id = ""
        self.ui = ""
        self.port = 0
        self.host = ""
        self.asker: threading.Thread | None = None
        self.asked_id = ""  # set by the asker thread
        self.done = threading.Event()
        self.reported: dict[str, Any] = {}
        self.in_traceback = False

    def feed(self, data: bytes) -> None:
        for line in self.lines.feed(data):
            self._line(line)
        self._report()

    def _line(self, line: str) -> None:
        # A Python traceback's exception line: the first unindented line after it. The
        # driver's ends Spark's lines; one from an executor is nested in the driver's, and
        # is the last one: the cause.
        if line.startswith("Traceback (most recent call last):"):
            self.in_traceback = True
            return
        if self.in_traceback and line[:1] not in (" ", "\t"):
            self.in_traceback = False
            if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line):
                self.failure = line[:MAX_FAILURE]
            return
        if self.app_id and self.ui:
            return
        if "Spark" not in line and "application" not in line and "Server created" not in line:
            return
        match = _APP_ID.search(line)
        if match and not self.app_id:
            self.app_id = match.group(1)
        match = _UI_URL.search(line)
        if match and not self.ui:
            self.ui = match.group(1).rstrip("/")
        match = _UI_PORT.search(line)
        if match and not self.port:
            self.port = int(match.group(1))
        match = _DRIVER_HOST.search(line)
        if match and not self.host:
            self.host = match.group(1)
        if not self.ui and self.port and self.host:
            self.ui = f"http://{self.host}:{self.port}"

    def poll(self, now: float) -> None:
        if self.asked_id and not self.app_id:
            self.app_id = self.asked_id
            self._report()
        if self.app_id or not self.port or self.asker is not None:
            return
        self.asker = threading.Thread(target=self._ask, args=(self.port,), daemon=True)
        self.asker.start()

    def _ask(self, port: int) -> None:
        deadline = time.monotonic() + ASK_SECONDS
        while not self.done.is_set() and time.monotonic() < deadline:
            found = _ask_driver(port)
            if found:
                self.asked_id = found
                return
            self.done.wait(ASK_EVERY)

    def finish(self) -> None:
        self.done.set()
        for line in self.lines.rest():
            self._line(line)
        if self.asked_id and not self.app_id:
            self.app_id = self.asked_id
        self._report()

    def _report(self) -> None:
        now = {k: v for k, v in (("app_id", self.app_id), ("ui", self.ui)) if v}
        if now and now != self.reported:
            self.reported = now
            self.found(dict(now))


def _ask_driver(port: int) -> str:
    """The application id from the driver's REST API on this host, or ``""``."""
    url = f"http://127.0.0.1:{port}/api/v1/applications"
    try:
        with urllib.request.urlopen(url, timeout=ASK_TIMEOUT) as answer:
            apps = json.loads(answer.read(1 << 16))
    except (OSError, ValueError):
        return ""
    if isinstance(apps, list) and apps and isinstance(apps[0], dict):
        ident = apps[0].get("id")
        if isinstance(ident, str) and _REST_ID.fullmatch(ident):
            return ident
    return ""
