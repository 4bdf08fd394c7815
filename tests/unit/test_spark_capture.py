"""SparkApp (trainform/capture/spark.py): the application id and web UI a driver's log names
(Spark 4.3's real lines, Spark 3's "Bound SparkUI" line, YARN's submitted application), the
exception line a failed driver ends with (an executor's nested traceback included), hostile
lines (ids with junk, a 10 MB line without a newline, output split at any byte), and the
question a local driver's REST API is asked for its id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainform.capture import spark as capture
from trainform.capture.spark import SparkApp

# A PySpark driver on a standalone cluster whose map function raised in an executor: lines
# of its real output.log (Spark 4.3.0, client mode under the launcher; paths shortened).
STANDALONE_FAILED = """\
WARNING: Using incubator modules: jdk.incubator.vector
26/12/03 16:47:28 WARN NativeCodeLoader: Unable to load native-hadoop library for your platform... using builtin-java classes where applicable
Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties
26/12/03 16:47:33 INFO SparkContext: Running Spark version 4.3.0
26/12/03 16:47:33 INFO SparkContext: Submitted application: trainform-fail-20261203-164718-3365
26/12/03 16:47:40 INFO JettyUtils: Start Jetty 127.0.0.1:4040 for SparkUI
26/12/03 16:47:41 WARN Utils: Service 'SparkUI' could not bind on port 4040. Attempting port 4041.
26/12/03 16:47:41 WARN Utils: Service 'SparkUI' could not bind on port 4041. Attempting port 4042.
26/12/03 16:47:41 WARN Utils: Service 'SparkUI' could not bind on port 4042. Attempting port 4043.
26/12/03 16:47:41 INFO Utils: Successfully started service 'SparkUI' on port 4043.
26/12/03 16:47:46 INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-20261203164745-0000
26/12/03 16:47:46 INFO Utils: Successfully started service 'org.apache.spark.network.netty.NettyBlockTransferService' on port 34969.
26/12/03 16:47:46 INFO NettyBlockTransferService: Server created on localhost:34969
26/12/03 16:48:11 WARN TaskSetManager: Lost task 0.0 in stage 0.0 (TID 0) (127.0.0.1 executor 0): org.apache.spark.api.python.PythonException: [PYTHON_EXCEPTION] An exception was thrown from the Python worker: Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/worker.py", line 4327, in invoke_udf
    run_process()
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/worker.py", line 4222, in process
    serializer.dump_stream(out_iter, outfile)
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/serializers.py", line 260, in dump_stream
    vs = list(itertools.islice(iterator, batch))
         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/util.py", line 158, in wrapper
    return f(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^
  File "/srv/cfg/.trainform/spark/runs/fail-20261203-164718-3365/src/fail.py", line 6, in boom
    raise ValueError("bad record 3")
ValueError: bad record 3
 SQLSTATE: 38000
 SQLSTATE: 38000) [duplicate 3]
26/12/03 16:48:15 ERROR TaskSetManager: Task 0 in stage 0.0 failed 4 times; aborting job
26/12/03 16:48:15 INFO SharedState: Warehouse path is 'file:/srv/cfg/.trainform/spark/runs/fail-20261203-164718-3365/src/spark-warehouse'.
Traceback (most recent call last):
  File "/srv/cfg/.trainform/spark/runs/fail-20261203-164718-3365/src/fail.py", line 8, in <module>
    print(spark.sparkContext.parallelize(range(5), 1).map(boom).collect())
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/core/rdd.py", line 1699, in collect
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/py4j-0.10.9.9-src.zip/py4j/java_gateway.py", line 1362, in __call__
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/errors/exceptions/captured.py", line 262, in deco
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/worker.py", line 4327, in invoke_udf
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/worker.py", line 4222, in process
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/serializers.py", line 260, in dump_stream
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/util.py", line 158, in wrapper
  File "/srv/cfg/.trainform/spark/runs/fail-20261203-164718-3365/src/fail.py", line 6, in boom
    raise ValueError("bad record 3")
  ^^^^^^^^^^^^^^^^^
pyspark.errors.exceptions.captured.PythonException: An exception was thrown from the Python worker:
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/worker.py", line 4327, in invoke_udf
    run_process()
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/worker.py", line 4222, in process
    serializer.dump_stream(out_iter, outfile)
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/serializers.py", line 260, in dump_stream
    vs = list(itertools.islice(iterator, batch))
         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/venv/lib/python3.11/site-packages/pyspark/python/lib/pyspark.zip/pyspark/util.py", line 158, in wrapper
    return f(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^
  File "/srv/cfg/.trainform/spark/runs/fail-20261203-164718-3365/src/fail.py", line 6, in boom
    raise ValueError("bad record 3")
ValueError: bad record 3
26/12/03 16:48:16 INFO SparkContext: Invoking stop() from shutdown hook
26/12/03 16:48:16 INFO SparkContext: SparkContext is stopping with exitCode 0 from run at Executors.java:539.
26/12/03 16:48:16 INFO SparkUI: Stopped Spark web UI at http://localhost:4043
26/12/03 16:48:16 INFO StandaloneSchedulerBackend: Shutting down all executors
"""

# A local[2] driver's lines that name its UI (it logs no application id).
LOCAL = """\
26/12/03 16:46:10 INFO SparkContext: Submitted application: trainform-words-20261203-164601-a66a
26/12/03 16:46:13 INFO JettyUtils: Start Jetty 127.0.0.1:4040 for SparkUI
26/12/03 16:46:14 WARN Utils: Service 'SparkUI' could not bind on port 4040. Attempting port 4041.
26/12/03 16:46:14 INFO Utils: Successfully started service 'SparkUI' on port 4043.
26/12/03 16:46:16 INFO NettyBlockTransferService: Server created on localhost:42709
"""


def fed(*chunks: bytes) -> tuple[SparkApp, list[dict[str, Any]]]:
    """A SparkApp fed ``chunks`` then finished, and what it reported, in order."""
    reports: list[dict[str, Any]] = []
    app = SparkApp(reports.append)
    for chunk in chunks:
        app.feed(chunk)
    app.finish()
    return app, reports


def test_spark_43s_real_lines_name_the_application_its_ui_and_the_exception() -> None:
    app, reports = fed(STANDALONE_FAILED.encode())
    # The UI: the port it bound at last (not 4040, which it could not bind) on the host the
    # driver's block manager serves from; the id from the scheduler's line, not from
    # "Submitted application: trainform-..." (the application's name).
    assert reports[-1] == {"app_id": "app-20261203164745-0000", "ui": "http://localhost:4043"}
    assert app.failure == "ValueError: bad record 3"


def test_each_change_is_reported_once() -> None:
    _, reports = fed(*(line.encode() + b"\n" for line in STANDALONE_FAILED.splitlines()))
    # The id comes first (the UI needs the driver's host, logged after it); the last report
    # has both; nothing twice.
    assert reports == [
        {"app_id": "app-20261203164745-0000"},
        {"app_id": "app-20261203164745-0000", "ui": "http://localhost:4043"},
    ]


def test_a_local_driver_names_its_ui_but_no_application() -> None:
    app, reports = fed(LOCAL.encode())
    assert reports == [{"ui": "http://localhost:4043"}]
    assert app.app_id == "" and app.port == 4043 and app.failure == ""


def test_spark_3s_bound_sparkui_line_gives_the_ui() -> None:
    _, reports = fed(
        b"23/05/01 10:00:00 INFO Utils: Successfully started service 'SparkUI' on port 4040.\n"
        b"23/05/01 10:00:00 INFO SparkUI: Bound SparkUI to 0.0.0.0, and started at http://h:4040\n"
        b"23/05/01 10:00:01 INFO NettyBlockTransferService: Server created on 10.0.0.5:37079\n"
    )
    # The URL Spark printed wins over one put together from the port and the host.
    assert reports == [{"ui": "http://h:4040"}]


def test_yarns_submitted_application_is_the_id() -> None:
    _, reports = fed(
        b"24/01/01 10:00:00 INFO SparkContext: Submitted application: trainform-r1\n"
        b"24/01/01 10:00:05 INFO Client: Submitted application application_1700000000000_0001\n"
        b"24/01/01 10:00:06 INFO Client: Submitted application application_1700000000000_0002\n"
    )
    assert reports == [{"app_id": "application_1700000000000_0001"}]


def test_an_ipv6_driver_host_makes_the_ui() -> None:
    _, reports = fed(
        b"INFO Utils: Successfully started service 'SparkUI' on port 4041.\n"
        b"INFO NettyBlockTransferService: Server created on [fd00::5]:37079\n"
    )
    assert reports == [{"ui": "http://[fd00::5]:4041"}]


@pytest.mark.parametrize(
    "line",
    [
        b"INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-2026x-0001",
        b"INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-123-456junk",
        b"INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-1",
        b"INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID "
        + b"app-1" * 30
        + b"-1",
        b"INFO Client: Submitted application application_17000000000000000000000_1",
        b"INFO Client: Submitted application ../../etc/passwd",
        b"INFO SparkUI: Bound SparkUI to 0.0.0.0, and started at javascript:alert(1)",
        b"INFO Utils: Successfully started service 'SparkUI' on port 404000.",
        b"INFO Utils: Successfully started service 'SparkUI' on port 40a0.",
        b"INFO NettyBlockTransferService: Server created on evil host:1",
    ],
)
def test_hostile_lines_give_nothing(line: bytes) -> None:
    app, reports = fed(
        line + b"\n",
        b"INFO NettyBlockTransferService: Server created on h:1\n"
        if b"SparkUI" in line
        else b"INFO Utils: Successfully started service 'SparkUI' on port 4040.\n",
    )
    assert app.app_id == ""
    assert all("app_id" not in r for r in reports), reports
    if b"SparkUI" in line:
        assert reports == [], reports  # no port and no URL: no UI


def test_an_id_followed_by_junk_is_taken_only_up_to_a_word_boundary() -> None:
    _, reports = fed(
        b"INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID "
        b"app-20261203164745-0007; rm -rf /\n"
        b"INFO SparkUI: Bound SparkUI to h, and started at http://h:4040/<script>\n"
    )
    assert reports[-1] == {"app_id": "app-20261203164745-0007", "ui": "http://h:4040"}


def test_a_10_mb_line_without_a_newline_is_cut_and_what_follows_is_read() -> None:
    reports: list[dict[str, Any]] = []
    app = SparkApp(reports.append)
    for _ in range(10):
        app.feed(b"x" * (1 << 20))
    # The pending part of the line never grows past the limit.
    assert app.lines.size <= capture.MAX_LINE
    app.feed(b"\nINFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-1-2\n")
    app.finish()
    assert reports == [{"app_id": "app-1-2"}]


def test_a_10_mb_exception_line_is_cut_for_the_message() -> None:
    app, _ = fed(
        b'Traceback (most recent call last):\n  File "x"\nValueError: ' + b"y" * (10 << 20)
    )
    assert app.failure.startswith("ValueError: yyy")
    assert len(app.failure) == capture.MAX_FAILURE


def test_output_split_at_any_byte_gives_the_same_result() -> None:
    data = STANDALONE_FAILED.encode()
    whole, whole_reports = fed(data)
    for cut in range(0, len(data), 7):
        app, reports = fed(data[:cut], data[cut:])
        assert (app.app_id, app.ui, app.failure) == (whole.app_id, whole.ui, whole.failure), cut
        assert reports[-1] == whole_reports[-1], cut
    app, reports = fed(*(data[i : i + 1] for i in range(len(data))))
    assert (app.app_id, app.ui, app.failure) == (whole.app_id, whole.ui, whole.failure)


def test_a_line_of_invalid_utf8_is_read_as_text() -> None:
    _, reports = fed(
        b"\xff\xfe INFO Utils: Successfully started service 'SparkUI' on port 4040.\r\n"
        b"INFO NettyBlockTransferService: Server created on h:1\xc3\n"
    )
    assert reports == [{"ui": "http://h:4040"}]


# -- the exception line of a failed driver -------------------------------------------------


def test_the_last_tracebacks_exception_line_is_the_failure() -> None:
    app, _ = fed(
        b"Traceback (most recent call last):\n"
        b'  File "main.py", line 3, in <module>\n'
        b"KeyError: 'first'\n"
        b"\n"
        b"During handling of the above exception, another exception occurred:\n"
        b"\n"
        b"Traceback (most recent call last):\n"
        b'  File "main.py", line 5, in <module>\n'
        b"pyspark.errors.exceptions.captured.PythonException: An exception was thrown from "
        b"the Python worker:\n"
        b"Traceback (most recent call last):\n"
        b'  File "worker.py", line 9, in boom\n'
        b"    raise ZeroDivisionError('x')\n"
        b"ZeroDivisionError: division by zero\n"
        b"24/01/01 10:00:00 INFO SparkContext: Invoking stop() from shutdown hook\n"
        b"24/01/01 10:00:01 ERROR Utils: Uncaught exception in thread main\n"
    )
    assert app.failure == "ZeroDivisionError: division by zero"


def test_an_indented_exception_inside_a_traceback_is_not_taken() -> None:
    app, _ = fed(
        b"Traceback (most recent call last):\n"
        b'  File "main.py", line 7, in <module>\n'
        b'    ValueError("quoted in the source line")\n'
        b"\tValueError: tabbed\n"
        b"RuntimeError: the real one\n"
    )
    assert app.failure == "RuntimeError: the real one"


@pytest.mark.parametrize(
    "text",
    [
        # an exception-looking line with no traceback before it
        b"ValueError: printed by the script\n",
        # a traceback that ends with something that is no exception line
        b'Traceback (most recent call last):\n  File "m.py", line 1\nhello world\n'
        b"ValueError: after the traceback ended\n",
        # Spark's own ERROR lines
        b"24/01/01 ERROR Executor: Exception in task 0.0 in stage 0.0 (TID 0)\n",
    ],
)
def test_no_failure_without_a_tracebacks_exception_line(text: bytes) -> None:
    app, _ = fed(text)
    assert app.failure == ""


def test_the_traceback_may_end_the_output_without_a_newline() -> None:
    app, _ = fed(b'Traceback (most recent call last):\n  File "m.py"\nOSError: gone')
    assert app.failure == "OSError: gone"


# -- a local driver's id, from its REST API --------------------------------------------------


class _Driver(BaseHTTPRequestHandler):
    answer: bytes = b"[]"
    asked: list[str] = []

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def driver() -> Iterator[tuple[int, type[_Driver]]]:
    """A stand-in for a local driver's REST API on 127.0.0.1 (a Spark driver takes a JVM
    and tens of seconds; the integration tests run real ones)."""
    handler = type("Handler", (_Driver,), {"answer": b"[]", "asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), handler
    finally:
        server.shutdown()
        server.server_close()


def _local_app(port: int) -> tuple[SparkApp, list[dict[str, Any]]]:
    reports: list[dict[str, Any]] = []
    app = SparkApp(reports.append)
    app.feed(f"INFO Utils: Successfully started service 'SparkUI' on port {port}.\n".encode())
    return app, reports


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_local_drivers_id_comes_from_its_rest_api(driver: tuple[int, type[_Driver]]) -> None:
    port, handler = driver
    handler.answer = json.dumps([{"id": "local-1764771234567", "name": "x"}]).encode()
    app, reports = _local_app(port)
    app.poll(100.0)
    _until(lambda: bool(app.asked_id))  # asked by a thread: poll never waits on the driver
    app.poll(101.0)
    assert handler.asked == ["/api/v1/applications"]
    assert reports == [{"app_id": "local-1764771234567"}]
    app.poll(200.0)  # known: not asked again
    assert len(handler.asked) == 1


def test_a_driver_slow_to_answer_is_asked_again_until_it_names_the_id(
    driver: tuple[int, type[_Driver]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, handler = driver
    monkeypatch.setattr(capture, "ASK_EVERY", 0.05)
    app, reports = _local_app(port)
    app.poll(0.0)
    _until(lambda: len(handler.asked) >= 3)  # "[]": Spark is starting up
    handler.answer = json.dumps([{"id": "local-1764771234567"}]).encode()
    _until(lambda: bool(app.asked_id))
    app.finish()
    assert reports == [{"app_id": "local-1764771234567"}]


@pytest.mark.parametrize(
    "answer",
    [b"[]", b"{}", b"not json", b'[{"id": "local-1; rm -rf /"}]', b'[{"id": 5}]', b"[1]"],
)
def test_a_driver_that_answers_no_id_is_asked_for_a_bounded_time(
    driver: tuple[int, type[_Driver]], answer: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, handler = driver
    handler.answer = answer
    monkeypatch.setattr(capture, "ASK_EVERY", 0.02)
    monkeypatch.setattr(capture, "ASK_SECONDS", 0.3)
    app, reports = _local_app(port)
    app.poll(0.0)
    app.poll(0.0)  # one asker, whatever the polls
    assert app.asker is not None
    app.asker.join(5)
    assert not app.asker.is_alive()  # it gave up
    assert len(handler.asked) >= 2
    app.poll(1.0)
    assert app.app_id == "" and reports == []


def test_finish_stops_the_asker(
    driver: tuple[int, type[_Driver]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _ = driver
    monkeypatch.setattr(capture, "ASK_EVERY", 0.05)
    app, _ = _local_app(port)
    app.poll(0.0)
    app.finish()
    assert app.asker is not None
    app.asker.join(5)
    assert not app.asker.is_alive()


def test_nobody_is_asked_before_the_port_is_known_or_once_the_id_is(
    driver: tuple[int, type[_Driver]],
) -> None:
    _, handler = driver
    app, _ = fed(b"INFO nothing yet\n")
    app.poll(100.0)
    app, _ = fed(STANDALONE_FAILED.encode())
    app.poll(100.0)
    assert handler.asked == []
