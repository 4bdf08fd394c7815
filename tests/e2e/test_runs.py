"""Training runs through the real CLI, as a new user would drive them: the quick-start example
applied end to end and inspected with `trainform runs ...`; failures, time limits, detached
runs, cancellation and destroy (with no process left behind); arguments and environment
variables reaching the script intact; metrics scraped from log lines; what local compute
refuses at plan time; ad hoc `trainform submit`; and managed pip environments, built once and
reused (offline, from a wheel the test builds itself).

Every run is a real launcher process on this machine, started by `python -m trainform` in a
temporary configuration folder (fixtures in tests/conftest.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from helpers import CLI, base_env, failed, ok, wait_until

from trainform.state.locking import process_running as alive

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"

LOCAL = """\
compute "local" {
  type                = "local"
  max_concurrent_runs = 4
}
"""


def run_block(name: str, script: str, extra: str = "", compute: str = "compute.local") -> str:
    return (
        f'run "{name}" {{\n'
        f'  experiment = "tests"\n'
        f"  compute    = {compute}\n"
        f'  source_dir = "src"\n'
        f'  script     = "{script}"\n'
        f"{extra}"
        "}\n"
    )


def runs_json(cli, *args: str) -> list[dict]:
    return json.loads(ok(cli("runs", "list", "--json", *args)).out)


def show(cli, ref: str) -> dict:
    return json.loads(ok(cli("runs", "show", ref, "--json")).out)


def gone(pids: list[int], timeout: float = 20.0) -> None:
    wait_until(f"processes {pids} to end", lambda: not any(alive(p) for p in pids), timeout=timeout)


@pytest.fixture
def leftovers():
    """Pids a test saw its runs start; any still alive at the end are killed, so a failing
    test does not leave 60-second sleepers behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def pid_from_log(cli, ref: str) -> list[int]:
    """The pids a running script printed as `pids N M ...`, read with `runs logs`."""

    def read():
        match = re.search(r"^pids ([\d ]+)$", cli("runs", "logs", ref).out, re.M)
        return [int(p) for p in match.group(1).split()] if match else None

    return wait_until(f"{ref} to print its pids", read)


# A script that reports its pid and a child's (same process group), then sleeps.
SLEEPER = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
pids = f"{os.getpid()} {child.pid}"
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "pids"), "w") as fh:
    fh.write(pids)
print("pids", pids, flush=True)
time.sleep(60)
"""


# -- the quick-start example -------------------------------------------------------------------


def copy_quickstart(folder: Path) -> None:
    shutil.copytree(QUICKSTART, folder, dirs_exist_ok=True)
    shutil.rmtree(folder / ".trainform", ignore_errors=True)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory):
    """The quick-start example, applied once; yields (cli, apply result)."""
    folder = tmp_path_factory.mktemp("quickstart") / "config"
    copy_quickstart(folder)
    cli = CLI(folder, base_env())
    return cli, cli("apply", "-auto-approve")


def test_quickstart_apply_streams_the_run_log_and_succeeds(quickstart):
    _, applied = quickstart
    ok(applied)
    for epoch in range(10):
        assert re.search(rf"^run\.train\s*\| epoch {epoch:2d}  loss ", applied.out, re.M), (
            applied.out
        )
    assert re.search(r"^run\.train\s*\| saved model to ", applied.out, re.M)
    assert "Apply complete!" in applied.out


def test_quickstart_runs_show_has_metrics_and_params(quickstart):
    cli, _ = quickstart
    text = ok(cli("runs", "show", "run.train")).out
    assert "completed" in text
    for needle in ("loss:", "accuracy:", "lr = 0.5", "epochs = 10"):
        assert needle in text, text

    data = show(cli, "run.train")
    assert data["status"] == "completed"
    assert data["exit_code"] == 0
    assert data["address"] == "run.train"
    assert data["experiment"] == "quickstart"
    assert data["params"]["lr"] == 0.5
    assert data["params"]["epochs"] == 10
    assert data["metrics"]["loss"]["count"] == 10
    assert data["metrics"]["accuracy"]["count"] == 10
    assert 0.5 < data["metrics"]["accuracy"]["last"] <= 1.0
    assert data["metrics"]["loss"]["last"] < data["metrics"]["loss"]["max"]


def test_quickstart_metrics_have_a_point_per_epoch(quickstart):
    cli, _ = quickstart
    data = json.loads(ok(cli("runs", "metrics", "run.train", "--json")).out)
    assert data["run"] == show(cli, "run.train")["id"]
    for name in ("loss", "accuracy"):
        steps = sorted(p["step"] for p in data["points"] if p["name"] == name)
        assert steps == list(range(10)), (name, data["points"])
        assert all(isinstance(p["value"], float) for p in data["points"] if p["name"] == name)
    assert data["params"]["lr"] == 0.5

    table = ok(cli("runs", "metrics", "run.train")).out
    assert "loss" in table and "accuracy" in table


def test_quickstart_metric_chart(quickstart):
    cli, _ = quickstart
    chart = ok(cli("runs", "metrics", "run.train", "--chart", "loss")).out
    lines = chart.splitlines()
    assert "loss" in lines[0] and "10 points" in lines[0], chart
    assert sum(line.count("*") for line in lines) >= 5, chart
    loss = show(cli, "run.train")["metrics"]["loss"]
    assert f"{loss['max']:.4g}" in chart and f"{loss['min']:.4g}" in chart, chart

    failed(cli("runs", "metrics", "run.train", "--chart", "nonsense"), "nonsense")


def test_quickstart_outputs_hold_the_model(quickstart, tmp_path):
    cli, _ = quickstart
    dest = tmp_path / "model-out"
    ok(cli("runs", "outputs", "run.train", "--to", str(dest)))
    model = json.loads((dest / "model.json").read_text())
    assert len(model["weights"]) == 3
    assert all(isinstance(w, float) for w in model["weights"])
    # The configuration's `model` output points at the same collected file.
    path = Path(ok(cli("output", "--raw", "model")).out.strip())
    assert json.loads(path.read_text()) == model


def test_quickstart_logs_print_every_epoch(quickstart):
    cli, _ = quickstart
    log = ok(cli("runs", "logs", "run.train")).out
    for epoch in range(10):
        assert re.search(rf"^epoch {epoch:2d}  loss ", log, re.M), log
    assert "run.train" not in log  # the raw log, not apply's prefixed view


def test_quickstart_second_plan_has_nothing_to_do(quickstart):
    cli, _ = quickstart
    ok(cli("plan", "--detailed-exitcode"))


def test_quickstart_changes_that_resubmit_and_those_that_do_not(cli):
    copy_quickstart(cli.cwd)
    ok(cli("apply", "-auto-approve"))
    first = runs_json(cli)
    assert [r["address"] for r in first] == ["run.train"]

    # Files the source folder's .trainignore leaves out do not make the run stale.
    cli.write("src/x.log", "noise\n")
    cli.write("src/data/big.bin", "ignored\n")
    ok(cli("plan", "--detailed-exitcode"))

    # The variable feeding an argument: the plan names the argument that changed.
    plan = ok(cli("plan", "--detailed-exitcode", "--var", "learning_rate=0.2"), 2)
    assert "run.train" in plan.out and "--lr" in plan.out and "0.2" in plan.out, plan.out

    # Editing the script resubmits, naming the file; applying makes a second run.
    script = cli.cwd / "src" / "train.py"
    script.write_text(script.read_text() + "\n# tweaked\n")
    plan = ok(cli("plan", "--detailed-exitcode"), 2)
    assert "run.train" in plan.out and "train.py" in plan.out and "resubmit" in plan.out, plan.out
    ok(cli("apply", "-auto-approve"))
    runs = runs_json(cli)
    assert [r["address"] for r in runs] == ["run.train", "run.train"]
    assert all(r["status"] == "completed" for r in runs)
    assert runs[1]["id"] == first[0]["id"]
    assert runs[0]["id"] != first[0]["id"]
    assert runs[0]["fingerprint"] != first[0]["fingerprint"]
    ok(cli("plan", "--detailed-exitcode"))


def test_configuration_files_are_not_part_of_a_runs_snapshot(cli):
    """With source_dir = "." (the default) the configuration's own folder is the snapshot:
    editing the configuration (tags, max_duration) or its variable files updates the run in
    place and never resubmits it; an edit to a real source file does."""
    config = (
        LOCAL
        + 'run "train" {\n  experiment = "tests"\n  compute = compute.local\n'
        + '  script = "train.py"\n  tags = { team = "a" }\n  max_duration = "5m"\n}\n'
    )
    cli.write("main.train.hcl", config)
    cli.write("extra.train.yaml", "locals:\n  unused: 1\n")
    cli.write("trainform.tfvars", "# no variables\n")
    cli.write("train.py", "print('ok')\n")
    ok(cli("apply", "-auto-approve"))
    (snapshot,) = [r["snapshot_files"] for r in [show(cli, "run.train")]]
    assert snapshot == 1, "only train.py is source"

    cli.write(
        "main.train.hcl",
        config.replace('team = "a"', 'team = "b"').replace('"5m"', '"10m"'),
    )
    cli.write("extra.train.yaml", "locals:\n  unused: 2\n")
    cli.write("trainform.tfvars", "# still no variables\n")
    plan = ok(cli("plan", "--detailed-exitcode"), 2)
    assert "run.train will be updated in-place" in plan.out, plan.out
    assert "resubmit" not in plan.out, plan.out
    ok(cli("apply", "-auto-approve"))
    assert len(runs_json(cli)) == 1
    ok(cli("plan", "--detailed-exitcode"))

    cli.write("train.py", "print('ok again')\n")
    plan = ok(cli("plan", "--detailed-exitcode"), 2)
    assert "run.train will be resubmitted: train.py changed" in plan.out, plan.out


# -- failures and limits -----------------------------------------------------------------------


def test_failing_script_fails_apply_with_its_last_lines_and_is_resubmitted(cli):
    cli.write("main.train.hcl", LOCAL + run_block("bad", "bad.py"))
    cli.write(
        "src/bad.py",
        "import sys\nfor i in range(30):\n    print(f'line {i}')\n"
        "print('about to fail', flush=True)\nsys.exit(3)\n",
    )
    result = failed(cli("apply", "-auto-approve"), "exit code 3")
    summary = result.all.split("last log lines:", 1)
    assert len(summary) == 2, result.all
    assert "about to fail" in summary[1] and "line 29" in summary[1], result.all
    assert show(cli, "run.bad")["status"] == "failed"
    assert show(cli, "run.bad")["exit_code"] == 3

    plan = ok(cli("plan", "--detailed-exitcode"), 2)
    assert re.search(
        r"run\.bad will be resubmitted: the last run bad-\S+ failed: exit code 3", plan.out
    ), plan.out
    # a resubmission never shows as an empty block
    assert '~ status = "failed" -> (known after apply)' in plan.out, plan.out


def test_a_failed_runs_log_is_shown_once_streamed_then_once_in_the_summary(cli):
    """A raising script's traceback is streamed while it runs and shown once more, with its
    indentation, in the failure summary: never a third time in the failed line."""
    cli.write("main.train.hcl", LOCAL + run_block("bad", "bad.py"))
    cli.write(
        "src/bad.py",
        "def inner():\n    raise ValueError('boom-7f2c')\n\n\ndef outer():\n    inner()\n\n\n"
        "print('starting', flush=True)\nouter()\n",
    )
    result = cli("apply", "-auto-approve")  # (the script's own traceback is expected)
    assert result.code == 1 and "exit code 1" in result.all, result.all
    assert result.all.count("ValueError: boom-7f2c") == 2, result.all
    assert result.all.count("line 10, in <module>") == 2, result.all
    summary = result.all.split("Apply incomplete.", 1)[1]
    assert "ValueError: boom-7f2c" in summary, result.all
    # indentation of the traceback survives (the code line is deeper than its File line)
    lines = summary.splitlines()
    at = next(i for i, line in enumerate(lines) if "line 6, in outer" in line)
    indent = len(lines[at]) - len(lines[at].lstrip())
    assert len(lines[at + 1]) - len(lines[at + 1].lstrip()) == indent + 2, summary
    assert "run.bad: failed after " in result.out, result.out


def test_a_failed_pip_build_is_shown_once_in_the_log_and_named_in_the_summary(cli, tmp_path):
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    cli.write("main.train.hcl", pip_config("nosuch-package-abc==9.9"))
    cli.write("src/t.py", PIP_SCRIPT)
    result = failed(cli("apply", "-auto-approve", timeout=300, **offline))
    needle = "No matching distribution found for nosuch-package-abc==9.9"
    # streamed once; in the summary once as the run's message and once in its last lines
    assert result.all.count(needle) == 3, result.all
    assert result.all.split("Apply incomplete.", 1)[1].count(needle) == 2, result.all


def test_time_limit_ends_the_run_and_every_process_of_it(cli, tmp_path, leftovers):
    extra = '  max_duration = "2s"\n  grace_period = "1s"\n'
    cli.write("main.train.hcl", LOCAL + run_block("slow", "slow.py", extra))
    # It ignores SIGTERM, so only the kill after the grace period can stop it.
    cli.write(
        "src/slow.py",
        SLEEPER.replace("time.sleep(60)\n", "")
        + "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n",
    )
    started = time.monotonic()
    result = failed(cli("apply", "-auto-approve", timeout=90), "timed out")
    assert time.monotonic() - started < 45, "apply waited for the whole 60 s script"

    data = show(cli, "run.slow")
    assert data["status"] == "timed_out", data
    ran = datetime.fromisoformat(data["finished"]) - datetime.fromisoformat(data["started"])
    assert ran.total_seconds() < 15, f"a 2 s time limit ended the run after {ran}"
    dest = tmp_path / "slow-out"
    ok(cli("runs", "outputs", "run.slow", "--to", str(dest)))
    pids = [int(p) for p in (dest / "pids").read_text().split()]
    leftovers.extend(pids)
    assert len(pids) == 2
    gone(pids, timeout=10)
    assert "run.slow" in result.all


# -- detached runs, cancel, wait, destroy ------------------------------------------------------


def test_detached_run_is_listed_planned_as_running_canceled_and_waited_for(cli, leftovers):
    cli.write("main.train.hcl", LOCAL + run_block("sleepy", "sleepy.py", '  grace_period = "1s"\n'))
    cli.write("src/sleepy.py", SLEEPER)
    started = time.monotonic()
    ok(cli("apply", "-auto-approve", "--detach", timeout=60))
    assert time.monotonic() - started < 40, "apply --detach waited for the run"

    running = wait_until(
        "the run to be listed as running",
        lambda: runs_json(cli, "--status", "running"),
    )
    assert [r["address"] for r in running] == ["run.sleepy"]
    pids = pid_from_log(cli, "run.sleepy")
    leftovers.extend(pids)
    assert all(alive(p) for p in pids)

    plan = ok(cli("plan"))
    assert "run.sleepy" in plan.out and "running" in plan.out, plan.out
    ok(cli("plan", "--detailed-exitcode"))

    cancel = ok(cli("runs", "cancel", "run.sleepy"))
    assert "canceled" in cancel.out, cancel.all
    assert show(cli, "run.sleepy")["status"] == "canceled"
    gone(pids)
    assert runs_json(cli, "--status", "running") == []
    assert "canceled" in failed(cli("runs", "wait", "run.sleepy")).all

    # A detached run that completes: `runs wait` prints its log and exits 0.
    cli.write("src/sleepy.py", "import time\ntime.sleep(1)\nprint('finished sleeping')\n")
    ok(cli("apply", "-auto-approve", "--detach"))
    waited = ok(cli("runs", "wait", "run.sleepy", timeout=60))
    assert "completed" in waited.all
    assert "finished sleeping" in waited.out
    assert show(cli, "run.sleepy")["status"] == "completed"
    ok(cli("plan", "--detailed-exitcode"))


def test_destroy_cancels_a_running_run_and_keeps_its_history(cli, leftovers):
    cli.write("main.train.hcl", LOCAL + run_block("sleepy", "sleepy.py", '  grace_period = "1s"\n'))
    cli.write("src/sleepy.py", SLEEPER)
    ok(cli("apply", "-auto-approve", "--detach", timeout=60))
    pids = pid_from_log(cli, "run.sleepy")
    leftovers.extend(pids)
    run_id = runs_json(cli)[0]["id"]

    ok(cli("destroy", "-auto-approve", timeout=60))
    gone(pids)
    assert ok(cli("state", "list")).out.split() == []
    wait_until(
        "the destroyed run to be recorded as canceled",
        lambda: [(r["id"], r["status"]) for r in runs_json(cli)] == [(run_id, "canceled")],
    )
    assert f"pids {pids[0]} {pids[1]}" in ok(cli("runs", "logs", run_id)).out
    assert "canceled" in ok(cli("runs", "list")).out


# -- what reaches the script -------------------------------------------------------------------

TRICKY = [
    "two words",
    "it's",
    'say "hi"',
    "$HOME",
    "${not_interpolated}",
    "a;b",
    "line1\nline2",
    '"; rm -rf ~"',
    "`id`",
    "*",
    "",
    "--flag=x y",
]

DUMP = """\
import json, os, sys
keys = ["TRAINFORM_RUN_ID", "TRAINFORM_OUTPUT_DIR", "TRAINFORM_METRICS_FILE",
        "TRAINFORM_EXPERIMENT", "MY_VAR", "DOLLAR", "FROM_ENVIRONMENT"]
seen = {"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}}
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "seen.json"), "w") as fh:
    json.dump(seen, fh)
with open(os.environ["TRAINFORM_METRICS_FILE"], "a") as fh:
    fh.write(json.dumps({"kind": "metric", "name": "direct", "value": 7.0, "step": 0}) + "\\n")
"""


def hcl_string(value: str) -> str:
    """``value`` as an HCL string literal (``${`` escaped so it is not interpolated)."""
    return json.dumps(value).replace("${", "$${")


def seen_by(cli, tmp_path: Path, ref: str) -> dict:
    dest = tmp_path / "seen"
    ok(cli("runs", "outputs", ref, "--to", str(dest)))
    return json.loads((dest / "seen.json").read_text())


def test_arguments_arrive_exactly_as_written(cli, tmp_path):
    args = ", ".join(hcl_string(a) for a in TRICKY)
    config = (
        LOCAL
        + 'variable "extra" {\n  type    = string\n  default = ""\n}\n'
        + run_block("dump", "dump.py", f"  arguments  = [{args}, 3, 0.5, var.extra]\n")
    )
    cli.write("main.train.hcl", config)
    cli.write("src/dump.py", DUMP)
    from_cli = "a b \"c\" 'd' $e; rm -rf ~ && echo pwned"
    ok(cli("apply", "-auto-approve", "--var", f"extra={from_cli}"))
    assert seen_by(cli, tmp_path, "run.dump")["argv"] == [*TRICKY, "3", "0.5", from_cli]
    assert not (Path.home() / "pwned").exists()


def test_environment_variables_reach_the_script(cli, tmp_path):
    config = (
        LOCAL
        + 'environment "sys" {\n  python       = "python3"\n  user_managed = true\n'
        + '  variables    = { FROM_ENVIRONMENT = "from the environment block" }\n}\n'
        + run_block(
            "dump",
            "dump.py",
            "  environment = environment.sys\n"
            '  env        = { MY_VAR = "hello world", DOLLAR = "$HOME;x" }\n',
        ).replace('experiment = "tests"', 'experiment = "env-check"')
    )
    cli.write("main.train.hcl", config)
    cli.write("src/dump.py", DUMP)
    ok(cli("apply", "-auto-approve"))
    run = show(cli, "run.dump")
    env = seen_by(cli, tmp_path, "run.dump")["env"]
    assert env["TRAINFORM_RUN_ID"] == run["id"]
    assert env["TRAINFORM_EXPERIMENT"] == "env-check"
    assert env["MY_VAR"] == "hello world"
    assert env["DOLLAR"] == "$HOME;x"
    assert env["FROM_ENVIRONMENT"] == "from the environment block"
    assert os.path.isabs(env["TRAINFORM_OUTPUT_DIR"])
    assert env["TRAINFORM_OUTPUT_DIR"] != env["TRAINFORM_METRICS_FILE"]
    # What the script wrote there is what trainform collected: the outputs folder we read
    # seen.json from, and a metric appended to the metrics file by hand.
    points = json.loads(ok(cli("runs", "metrics", "run.dump", "--json")).out)["points"]
    assert [(p["name"], p["value"]) for p in points] == [("direct", 7.0)]


def test_regex_scrapes_metrics_from_a_script_that_only_prints(cli):
    extra = '  metrics    = { acc = "acc=([0-9.]+)" }\n'
    cli.write("main.train.hcl", LOCAL + run_block("scrape", "p.py", extra))
    cli.write(
        "src/p.py",
        "for i, a in enumerate([0.5, 0.75, 0.9]):\n    print(f'epoch {i} acc={a}')\n"
        "print('nothing to see here')\n",
    )
    ok(cli("apply", "-auto-approve"))
    data = json.loads(ok(cli("runs", "metrics", "run.scrape", "--json")).out)
    assert [(p["name"], p["step"], p["value"]) for p in data["points"]] == [
        ("acc", 0, 0.5),
        ("acc", 1, 0.75),
        ("acc", 2, 0.9),
    ]
    assert data["summary"]["acc"]["last"] == 0.9


# -- what local compute refuses at plan time ---------------------------------------------------


def test_multi_node_run_on_local_compute_is_refused_at_plan_time(cli):
    cli.write("main.train.hcl", LOCAL + run_block("multi", "t.py", "  node_count = 2\n"))
    cli.write("src/t.py", "print('should never run')\n")
    result = failed(cli("plan"), "node_count = 2", "'local'", "main.train.hcl:")
    assert "run.multi" in result.err
    failed(cli("apply", "-auto-approve"), "node_count = 2")
    assert runs_json(cli) == []


# (docker environments run in containers on local compute: tests/docker/test_container_env.py)
@pytest.mark.parametrize(
    "environment, key",
    [
        ('environment "env" {\n  conda_file = "env.yml"\n}\n', "conda_file"),
    ],
    ids=["conda_file"],
)
def test_environments_local_compute_cannot_provide_are_refused_at_plan_time(cli, environment, key):
    cli.write("env.yml", "name: x\ndependencies: [python=3.11]\n")
    cli.write(
        "main.train.hcl",
        LOCAL + environment + run_block("r", "t.py", "  environment = environment.env\n"),
    )
    cli.write("src/t.py", "print('should never run')\n")
    result = failed(cli("plan"), "not supported on compute type", key, "run.r")
    assert "main.train.hcl:" in result.err
    failed(cli("apply", "-auto-approve"), "not supported on compute type")
    assert runs_json(cli) == []


# -- ad hoc submission -------------------------------------------------------------------------


def test_submit_runs_ad_hoc_and_is_recorded_but_not_managed(cli):
    copy_quickstart(cli.cwd)
    ok(cli("apply", "-auto-approve"))
    managed = ok(cli("state", "list")).out.split()

    result = ok(cli("submit", "src/train.py", "--compute", "workstation", "--", "--epochs", "2"))
    assert re.search(r"^epoch  1  loss", result.out, re.M), result.out
    assert not re.search(r"^epoch  2 ", result.out, re.M), result.out
    assert "completed" in result.all

    adhoc = [r for r in runs_json(cli) if r["address"] != "run.train"]
    assert len(adhoc) == 1 and adhoc[0]["status"] == "completed", adhoc
    assert ok(cli("state", "list")).out.split() == managed
    data = json.loads(ok(cli("runs", "metrics", adhoc[0]["id"], "--json")).out)
    assert data["params"]["epochs"] == 2
    assert len([p for p in data["points"] if p["name"] == "loss"]) == 2
    ok(cli("plan", "--detailed-exitcode"))


# -- managed pip environments ------------------------------------------------------------------


def build_wheel(folder: Path) -> Path:
    """A pure-Python wheel of `tinypkg` 0.1 (VALUE = 42), so pip can install offline."""
    files = {
        "tinypkg/__init__.py": "VALUE = 42\n",
        "tinypkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = "".join(f"{k},{digest(v)},{len(v.encode())}\n" for k, v in files.items())
    record += "tinypkg-0.1.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("tinypkg-0.1.dist-info/RECORD", record)
    return folder


def pip_config(requirement: str) -> str:
    return (
        LOCAL
        + 'variable "n" {\n  type    = string\n  default = "1"\n}\n'
        + f'environment "e" {{\n  python = "python3"\n  pip    = ["{requirement}"]\n}}\n'
        + run_block("pip", "t.py", "  environment = environment.e\n  arguments   = [var.n]\n")
    )


PIP_SCRIPT = """\
import sys
import tinypkg
print("tinypkg", tinypkg.VALUE, "arg", sys.argv[1], "prefix", sys.prefix != sys.base_prefix)
"""


def test_pip_environment_is_built_once_then_reused(cli, tmp_path):
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(build_wheel(tmp_path / "wheels"))}
    cli.write("main.train.hcl", pip_config("tinypkg==0.1"))
    cli.write("src/t.py", PIP_SCRIPT)

    first = ok(cli("apply", "-auto-approve", timeout=300, **offline))
    assert re.search(r"^run\.pip\s*\| tinypkg 42 arg 1 prefix True$", first.out, re.M), first.out
    assert show(cli, "run.pip")["environment"] == "built"

    second = ok(cli("apply", "-auto-approve", "--var", "n=2", timeout=300, **offline))
    assert re.search(r"^run\.pip\s*\| tinypkg 42 arg 2 prefix True$", second.out, re.M), second.out
    assert show(cli, "run.pip")["environment"] == "reused"
    assert len(runs_json(cli)) == 2


def test_pip_requirement_that_cannot_be_found_fails_the_run_with_pips_words(cli, tmp_path):
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(build_wheel(tmp_path / "wheels"))}
    cli.write("main.train.hcl", pip_config("nosuch-package-xyz==9.9"))
    cli.write("src/t.py", PIP_SCRIPT)
    result = failed(
        cli("apply", "-auto-approve", timeout=300, **offline),
        "environment build failed",
        "No matching distribution found for nosuch-package-xyz==9.9",
    )
    assert "tinypkg 42" not in result.out
    data = show(cli, "run.pip")
    assert data["status"] == "failed"
    assert "nosuch-package-xyz" in data["message"]
    ok(cli("plan", "--detailed-exitcode"), 2)
