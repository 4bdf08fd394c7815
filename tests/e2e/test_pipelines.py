"""Pipelines and data through the real CLI, on local compute: a dataset read by a run whose
named output another run reads; early cutoff (an upstream run whose outputs come out
byte-identical does not resubmit its downstream run); a changed dataset in the plan; a run
that writes into its read-only input; a failed upstream run; configuration mistakes reported
with their file and line; http(s) datasets checked against their sha256 and fetched once; a
saved plan whose dataset went away; a sweep whose trials read a dataset.

Every run is a real launcher process started by `python -m trainform` in a temporary
configuration folder; the http(s) datasets come from a server the test starts on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, failed, ok

LOCAL = 'compute "local" {\n  type = "local"\n  max_concurrent_runs = 2\n}\n'

# prep: reads its raw input (a folder), writes outputs/features/all.txt (the sorted rows,
# plus EXTRA when set), prints what it saw.
PREP = """\
import os, sys
raw = os.environ["TRAINFORM_INPUT_RAW"]
rows = sorted(open(os.path.join(raw, f)).read() for f in os.listdir(raw))
os.makedirs("outputs/features", exist_ok=True)
with open("outputs/features/all.txt", "w") as out:
    out.write("".join(rows) + os.environ.get("EXTRA", ""))
print("prep raw", raw, flush=True)
print("prep argv", sys.argv[1:], flush=True)
print("prep read", len(rows), "files", flush=True)
"""

TRAIN = """\
import os, sys
p = os.environ["TRAINFORM_INPUT_FEATURES"]
print("train features", p, sorted(os.listdir(p)), flush=True)
print("train rows", open(os.path.join(p, "all.txt")).read().count("row"), flush=True)
os.makedirs("outputs", exist_ok=True)
open("outputs/model.txt", "w").write("model")
"""


def run_block(name: str, folder: str, script: str, extra: str) -> str:
    return (
        f'run "{name}" {{\n'
        '  experiment = "pipes"\n'
        "  compute    = compute.local\n"
        f'  source_dir = "{folder}"\n'
        f'  script     = "{script}"\n'
        f"{extra}"
        "}\n"
    )


def write_data(cli: CLI, count: int = 4) -> None:
    for i in range(1, count + 1):
        cli.write(f"data/f{i}.csv", f"row {i}\n")


PREP_BLOCK = run_block(
    "prep",
    "src/prep",
    "prep.py",
    "  inputs     = { raw = dataset.raw }\n"
    "  input_args = true\n"
    '  outputs    = { features = "outputs/features" }\n',
)
TRAIN_BLOCK = run_block(
    "train",
    "src/train",
    "train.py",
    '  inputs  = { features = run.prep.outputs["features"] }\n'
    '  outputs = { model = "outputs/model.txt" }\n',
)


def pipeline(cli: CLI, more: str = "", prep_extra: str = "") -> None:
    """A dataset ``raw`` (data/, four one-row files), run.prep reading it and run.train
    reading prep's ``features``; ``more``: more blocks."""
    write_data(cli)
    cli.write("src/prep/prep.py", PREP)
    cli.write("src/train/train.py", TRAIN)
    prep = PREP_BLOCK.replace("  input_args", prep_extra + "  input_args")
    cli.write(
        "main.train.hcl",
        LOCAL + 'dataset "raw" {\n  source = "data"\n}\n' + prep + TRAIN_BLOCK + more,
    )


def run_id(cli: CLI, address: str) -> str:
    """The id of the run that state records for ``address`` (``runs show``)."""
    return str(json.loads(ok(cli("runs", "show", address, "--json")).out)["id"])


def logged(out: str, address: str, prefix: str) -> str:
    """The rest of the line ``address | prefix ...`` that apply streamed from a run's log."""
    found = re.search(rf"^{re.escape(address)}\s*\| {re.escape(prefix)} (.*)$", out, re.M)
    assert found, f"no {address} | {prefix} in\n{out}"
    return found.group(1)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# -- outputs flow from run to run ---------------------------------------------------------------


def test_outputs_flow_from_prep_to_train_and_input_args_pass_the_path(cli: CLI) -> None:
    pipeline(cli)
    out = ok(cli("apply", "-auto-approve")).out
    assert "Apply complete!" in out, out

    raw = logged(out, "run.prep", "prep raw")
    prep_id = run_id(cli, "run.prep")
    assert raw.endswith(f"/{prep_id}/inputs/raw"), raw
    assert logged(out, "run.prep", "prep argv") == repr(["--raw", raw])
    assert logged(out, "run.prep", "prep read") == "4 files"

    features = logged(out, "run.train", "train features")
    train_id = run_id(cli, "run.train")
    assert features == f"{Path(raw).parents[2] / train_id / 'inputs' / 'features'} ['all.txt']"
    assert logged(out, "run.train", "train rows") == "4"
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_a_one_file_dataset_gives_the_file_path(cli: CLI) -> None:
    cli.write("data/one.csv", "row 1\nrow 2\n")
    cli.write(
        "src/read.py",
        "import os\n"
        'p = os.environ["TRAINFORM_INPUT_TABLE"]\n'
        'print("table", p, os.path.isfile(p), repr(open(p).read()), flush=True)\n',
    )
    cli.write(
        "main.train.hcl",
        LOCAL
        + 'dataset "table" {\n  source = "data/one.csv"\n}\n'
        + run_block("read", "src", "read.py", "  inputs = { table = dataset.table }\n"),
    )
    out = ok(cli("apply", "-auto-approve")).out
    line = logged(out, "run.read", "table")
    path, rest = line.split(" ", 1)
    assert path.endswith(f"/{run_id(cli, 'run.read')}/inputs/table/one.csv"), line
    assert rest == "True 'row 1\\nrow 2\\n'", line


# -- early cutoff -------------------------------------------------------------------------------


def test_unchanged_upstream_outputs_do_not_resubmit_the_downstream_run(cli: CLI) -> None:
    pipeline(cli)
    ok(cli("apply", "-auto-approve"))
    prep_id, train_id = run_id(cli, "run.prep"), run_id(cli, "run.train")

    # A change to prep's code that leaves its output byte-identical.
    cli.write("src/prep/prep.py", PREP + "# a comment\n")
    plan = ok(cli("plan", "-detailed-exitcode"), 2).out
    assert "# run.prep will be resubmitted: prep.py changed" in plan, plan
    assert (
        "# run.train may be resubmitted, depending on run.prep's outputs "
        "(decided by apply once they are known)"
    ) in plan, plan
    out = ok(cli("apply", "-auto-approve")).out
    assert (
        "run.train: Reused: its inputs came out as its last run read them, "
        "so it was not resubmitted"
    ) in out, out
    assert "train features" not in out, out
    assert run_id(cli, "run.prep") != prep_id
    assert run_id(cli, "run.train") == train_id
    ok(cli("plan", "-detailed-exitcode"), 0)

    # A change that changes the output: train is resubmitted and reads the new rows.
    cli.write("src/prep/prep.py", PREP.replace('"EXTRA", ""', '"EXTRA", "row extra\\n"'))
    out = ok(cli("apply", "-auto-approve")).out
    assert "Reused" not in out, out
    assert re.search(r"^run\.train: submitted as run ", out, re.M), out
    assert logged(out, "run.train", "train rows") == "5"
    assert run_id(cli, "run.train") != train_id
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_a_changed_dataset_shows_in_the_plan_and_resubmits_its_reader(cli: CLI) -> None:
    pipeline(cli)
    ok(cli("apply", "-auto-approve"))
    cli.write("data/f5.csv", "row 5\n")
    plan = ok(cli("plan", "-detailed-exitcode"), 2).out
    assert "dataset.raw changed: 1 file added" in plan, plan
    assert "# run.prep will be resubmitted: input raw changed (from dataset.raw)" in plan, plan
    out = ok(cli("apply", "-auto-approve")).out
    assert logged(out, "run.prep", "prep read") == "5 files"
    assert logged(out, "run.train", "train rows") == "5"
    ok(cli("plan", "-detailed-exitcode"), 0)


# -- read-only inputs ---------------------------------------------------------------------------


def test_a_run_that_writes_into_its_input_fails_and_the_dataset_is_untouched(cli: CLI) -> None:
    write_data(cli)
    before = tree_bytes(cli.cwd / "data")
    # Root is not stopped by file modes: the launcher either mounts the inputs read-only (the
    # write is refused) or lets the write land on its own copy and fails the run for it.
    cli.write(
        "src/write.py",
        "import os\n"
        'raw = os.environ["TRAINFORM_INPUT_RAW"]\n'
        "try:\n"
        '    with open(os.path.join(raw, "f1.csv"), "a") as f:\n'
        '        f.write("tampered\\n")\n'
        "except OSError as exc:\n"
        '    print("refused", exc.errno, flush=True)\n'
        "else:\n"
        '    print("written", flush=True)\n',
    )
    cli.write(
        "main.train.hcl",
        LOCAL
        + 'dataset "raw" {\n  source = "data"\n}\n'
        + run_block("write", "src", "write.py", "  inputs = { raw = dataset.raw }\n"),
    )
    result = cli("apply", "-auto-approve")
    if "run.write     | written" in result.out or result.code != 0:
        failed(
            result,
            "the run changed its input data, which is read-only: raw/f1.csv",
            "the dataset itself is untouched",
        )
        assert "Apply complete" not in result.all
    else:
        assert re.search(r"^run\.write\s*\| refused (13|30)$", ok(result).out, re.M), result.out
    assert tree_bytes(cli.cwd / "data") == before
    # Nor did the write reach what the next run of the dataset reads.
    cli.write(
        "src/write.py",
        "import os\nprint('rows', open(os.path.join(os.environ['TRAINFORM_INPUT_RAW'], 'f1.csv')).read().count('row'))\n",
    )
    out = ok(cli("apply", "-auto-approve")).out
    assert logged(out, "run.write", "rows") == "1"


# -- a failed upstream run ----------------------------------------------------------------------


def test_a_failed_upstream_run_skips_its_downstream_run_only(cli: CLI) -> None:
    cli.write(
        "src/other/other.py",
        'print("other ran", flush=True)\n',
    )
    pipeline(cli, more=run_block("other", "src/other", "other.py", ""))
    cli.write("src/prep/prep.py", "raise SystemExit(1)\n" + PREP)
    result = failed(
        cli("apply", "-auto-approve"),
        "run.train: skipped (not started: run.prep failed)",
        "skipped run.train (not started: run.prep failed)",
    )
    assert re.search(r"^run\.other: Completed after ", result.out, re.M), result.out
    assert "train features" not in result.out
    other_id = run_id(cli, "run.other")

    cli.write("src/prep/prep.py", PREP)
    out = ok(cli("apply", "-auto-approve")).out
    assert logged(out, "run.prep", "prep read") == "4 files"
    assert logged(out, "run.train", "train rows") == "4"
    assert "run.other" not in out, out
    assert run_id(cli, "run.other") == other_id
    ok(cli("plan", "-detailed-exitcode"), 0)


# -- mistakes, with their file and line ---------------------------------------------------------


def _one_run(cli: CLI, extra: str, more: str = "") -> None:
    write_data(cli)
    cli.write("src/t.py", "import os\nos.makedirs('outputs', exist_ok=True)\n")
    cli.write(
        "main.train.hcl",
        LOCAL
        + 'dataset "raw" {\n  source = "data"\n}\n'
        + more
        + run_block("a", "src", "t.py", extra),
    )


def _at_line(result: Any, line: int) -> None:
    assert re.search(rf"main\.train\.hcl:{line}\b", result.all), result.all


# The run block starts on line 8 (LOCAL is four lines, the dataset three).
RUN_LINE = 8


def test_an_input_name_that_is_not_an_identifier_is_refused_at_plan(cli: CLI) -> None:
    _one_run(cli, '  inputs = { "bad-name" = dataset.raw }\n')
    result = failed(cli("plan"), "run.a: input name 'bad-name' is not an identifier")
    _at_line(result, RUN_LINE)
    # Nothing was started either.
    failed(cli("apply", "-auto-approve"), "input name 'bad-name' is not an identifier")
    assert not (cli.cwd / ".trainform" / "local" / "runs").exists() or not any(
        (cli.cwd / ".trainform" / "local" / "runs").iterdir()
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../x", "output x = '../x' escapes the run's folder"),
        ("elsewhere/x", "output x = 'elsewhere/x' is not inside outputs_dir 'outputs'"),
    ],
)
def test_an_output_outside_outputs_dir_is_refused_at_plan(
    cli: CLI, path: str, message: str
) -> None:
    _one_run(cli, f'  outputs = {{ x = "{path}" }}\n')
    _at_line(failed(cli("plan"), f"run.a: {message}"), RUN_LINE)


def test_a_declared_output_not_produced_fails_the_run_naming_it(cli: CLI) -> None:
    _one_run(cli, '  outputs = { features = "outputs/features" }\n')
    failed(
        cli("apply", "-auto-approve"),
        "declared output features (outputs/features) was not produced",
    )


def test_a_cycle_through_inputs_is_refused_at_plan(cli: CLI) -> None:
    write_data(cli)
    cli.write("src/t.py", "pass\n")
    cli.write(
        "main.train.hcl",
        LOCAL
        + run_block(
            "a",
            "src",
            "t.py",
            '  inputs  = { x = run.b.outputs["o"] }\n  outputs = { o = "outputs/o" }\n',
        )
        + run_block(
            "b",
            "src",
            "t.py",
            '  inputs  = { x = run.a.outputs["o"] }\n  outputs = { o = "outputs/o" }\n',
        ),
    )
    result = failed(cli("plan"), "dependency cycle")
    assert "run.a" in result.all and "run.b" in result.all, result.all
    assert re.search(r"main\.train\.hcl:(5|13)\b", result.all), result.all


def test_an_http_source_without_sha256_is_refused_before_it_is_fetched(
    cli: CLI, server: Served
) -> None:
    cli.write(
        "main.train.hcl",
        LOCAL + f'dataset "raw" {{\n  source = "{server.url}/rows.csv"\n}}\n',
    )
    result = failed(cli("plan"), "dataset.raw: an http(s) source must carry its sha256")
    _at_line(result, 5)
    assert server.hits == 0


# -- http(s) datasets -----------------------------------------------------------------------------

ROWS = b"row 1\nrow 2\nrow 3\n"


class Served:
    """A file served over http on 127.0.0.1, counting the requests for it."""

    def __init__(self) -> None:
        self.hits = 0
        self.url = ""


@pytest.fixture
def server() -> Iterator[Served]:
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/rows.csv":
                self.send_error(404)
                return
            served.hits += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(ROWS)))
            self.end_headers()
            self.wfile.write(ROWS)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _http_config(cli: CLI, url: str, sha: str) -> None:
    cli.write(
        "src/read.py",
        "import os\n"
        'p = os.environ["TRAINFORM_INPUT_RAW"]\n'
        'print("rows", os.path.basename(p), open(p).read().count("row"), flush=True)\n',
    )
    cli.write(
        "main.train.hcl",
        LOCAL
        + f'dataset "raw" {{\n  source = "{url}"\n  sha256 = "{sha}"\n}}\n'
        + run_block("read", "src", "read.py", "  inputs = { raw = dataset.raw }\n"),
    )


def test_an_http_dataset_is_checked_fetched_once_and_read(cli: CLI, server: Served) -> None:
    _http_config(cli, f"{server.url}/rows.csv", hashlib.sha256(ROWS).hexdigest())
    ok(cli("plan"))
    out = ok(cli("apply", "-auto-approve")).out
    assert logged(out, "run.read", "rows") == "rows.csv 3"
    ok(cli("plan", "-detailed-exitcode"), 0)
    ok(cli("apply", "-auto-approve"))
    assert server.hits == 1


def test_an_http_dataset_that_does_not_match_its_sha256_is_refused(
    cli: CLI, server: Served
) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    _http_config(cli, f"{server.url}/rows.csv", wrong)
    failed(cli("plan"), "does not match its sha256", hashlib.sha256(ROWS).hexdigest())
    downloads = cli.cwd / ".trainform" / "cache" / "downloads"
    kept = [p for p in downloads.rglob("*") if p.is_file()] if downloads.exists() else []
    assert kept == []
    failed(cli("apply", "-auto-approve"), "does not match its sha256")
    assert "rows" not in cli("runs", "list").out


# -- a saved plan whose dataset went away -----------------------------------------------------


def test_a_saved_plan_whose_dataset_was_removed_is_refused(cli: CLI) -> None:
    pipeline(cli)
    ok(cli("plan", "-out=p.tfplan"))
    shutil.rmtree(cli.cwd / "data")
    result = cli("apply", "p.tfplan")
    failed(result)
    assert re.search(r"stale|dataset\.raw: source 'data' does not exist", result.all), result.all
    assert "prep read" not in result.all
    runs = cli.cwd / ".trainform" / "local" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


# -- sweeps -------------------------------------------------------------------------------------


def test_sweep_trials_read_their_input(cli: CLI) -> None:
    write_data(cli)
    cli.write(
        "src/train.py",
        "import argparse, os\n"
        "from trainform.tracking import log_metric\n"
        "parser = argparse.ArgumentParser()\n"
        'parser.add_argument("--lr", type=float, required=True)\n'
        "args, _ = parser.parse_known_args()\n"
        'raw = os.environ["TRAINFORM_INPUT_RAW"]\n'
        "rows = sum(open(os.path.join(raw, f)).read().count('row') for f in os.listdir(raw))\n"
        'open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "rows"), "w").write(str(rows))\n'
        'log_metric("accuracy", rows * args.lr, step=1)\n',
    )
    cli.write(
        "main.train.hcl",
        LOCAL + 'dataset "raw" {\n  source = "data"\n}\n' + 'sweep "s" {\n'
        '  experiment = "tests"\n'
        "  trial {\n"
        "    compute    = compute.local\n"
        '    source_dir = "src"\n'
        '    script     = "train.py"\n'
        '    arguments  = ["--lr", param.lr]\n'
        "    inputs     = { raw = dataset.raw }\n"
        "  }\n"
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n    values = [0.1, 0.2]\n  }\n'
        '  objective {\n    metric = "accuracy"\n    goal   = "maximize"\n  }\n'
        "  limits {\n    max_total_runs = 2\n    max_concurrent_runs = 2\n  }\n"
        "}\n",
    )
    out = ok(cli("apply", "-auto-approve", timeout=180)).out
    assert "sweep completed" in out, out
    record = json.loads(ok(cli("sweeps", "show", "s", "--json")).out)["record"]
    trials = record["trials"]
    assert len(trials) == 2 and {t["status"] for t in trials} == {"completed"}, trials
    # accuracy = rows * lr: each trial read the four rows of its input
    assert {round(t["best"], 9) for t in trials} == {0.4, 0.8}, trials
    assert record["best"]["params"]["lr"] == 0.2, record["best"]
