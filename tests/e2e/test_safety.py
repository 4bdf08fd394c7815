"""Safety through the real CLI: secrets never reach disk or the terminal, saved plans apply
exactly or not at all, an apply that is killed or interrupted leaves state that says what was
done (and the next apply converges), failures are contained, and prevent_destroy holds.

Slow and failing resources come from the example third-party provider
(tests/plugins/trainform_example), whose side effects are marker files the tests can see.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from helpers import ok

SECRET = "hunter2-e2e-secret-9c41"


def refused(result, *needles: str):
    assert result.code == 1, f"exit {result.code}\n{result.out}\n{result.err}"
    assert "Traceback" not in result.all
    for needle in needles:
        assert needle in result.err, f"{needle!r} not in\n{result.err}"
    return result


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    """Every file under ``folder`` (WAL and shared-memory files included) containing needle.
    A file that vanishes while the folder is read (a running apply's temporary backup journal)
    held nothing by then."""
    found = []
    for p in folder.rglob("*"):
        try:
            if p.is_file() and needle in p.read_bytes():
                found.append(p)
        except FileNotFoundError:
            continue
    return found


def state_list(cli) -> list[str]:
    """Recorded addresses; none when no state file was ever written."""
    if not (cli.cwd / ".trainform" / "state.db").exists():
        return []
    return ok(cli("state", "list")).out.split()


def wait_until(predicate, proc, what: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return
        assert proc.poll() is None, f"the apply ended before {what}: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting until {what}")


def finish(proc, timeout: float = 120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise


# ---------------------------------------------------------------------------- secrets

SENSITIVE_CONFIG = """\
variable "token" {{
  type      = string
  sensitive = true
}}

variable "team" {{
  type    = string
  default = "ml"
}}

workspace "main" {{
  description = "team ${{var.team}}"
}}

compute "box" {{
  type        = "local"
  description = "uses ${{var.token}}"
  tags        = {{ team = var.team, auth = var.token }}
}}

compute "remote" {{
  type       = "example"
  marker_dir = "{markers}"
  secret     = var.token
}}

output "token" {{
  value     = var.token
  sensitive = true
}}

output "derived" {{
  value     = upper("x-${{var.token}}")
  sensitive = true
}}

output "team" {{
  value = var.team
}}
"""


def test_sensitive_value_never_reaches_disk_or_terminal(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    cli.write("main.train.hcl", SENSITIVE_CONFIG.format(markers=markers))
    cli.env["TRAINFORM_VAR_token"] = SECRET
    results = [
        ok(cli("validate")),
        ok(cli("plan"), 0),
        ok(cli("plan", "--json")),
        ok(cli("plan", "-out=plan.bin")),
        ok(cli("show", "plan.bin")),
        ok(cli("show", "--json", "plan.bin")),
        ok(cli("apply", "plan.bin")),
        ok(cli("show")),
        ok(cli("show", "--json")),
        ok(cli("output")),
        ok(cli("output", "--json")),
        ok(cli("output", "token")),
        ok(cli("output", "-raw", "token")),
        ok(cli("output", "--json", "derived")),
        ok(cli("state", "list")),
        ok(cli("state", "show", "compute.box")),
        ok(cli("state", "show", "compute.remote")),
        ok(cli("graph")),
        ok(cli("refresh")),
        ok(cli("plan", "--detailed-exitcode"), 0),
    ]
    # the secret was really used: the plan shows where, masked
    assert "(sensitive value)" in results[1].out
    assert json.loads(results[10].out)["token"] == {"value": None, "sensitive": True}
    for r in results:
        assert SECRET not in r.all, f"secret printed by a command:\n{r.all}"
        assert SECRET.upper() not in r.all

    # a changed secret is noticed (through its salted hash) and still never shown
    cli.env["TRAINFORM_VAR_token"] = SECRET + "-rotated"
    changed = ok(cli("plan", "--detailed-exitcode"), 2)
    assert "compute.remote" in changed.out and SECRET not in changed.all
    applied = ok(cli("apply", "-auto-approve"))
    assert SECRET not in applied.all

    # ... and given on the command line instead of the environment
    del cli.env["TRAINFORM_VAR_token"]
    ok(cli("apply", "-auto-approve", f"-var=token={SECRET}"))
    ok(cli("apply", "-auto-approve", "--var", f"token={SECRET}-2"))

    for needle in (SECRET.encode(), SECRET.upper().encode()):
        assert files_holding(cli.cwd / ".trainform", needle) == []
        assert needle not in (cli.cwd / "plan.bin").read_bytes()
        assert files_holding(markers, needle) == []


def test_sensitive_value_not_in_the_write_ahead_log_during_apply(plugin_cli, tmp_path):
    """While an apply is in flight SQLite keeps recent writes in state.db-wal; the secret must
    not be there either."""
    cli = plugin_cli
    markers = tmp_path / "markers"
    cli.write(
        "main.train.hcl",
        f"""\
variable "token" {{
  type      = string
  sensitive = true
}}

compute "slow" {{
  type          = "example"
  marker_dir    = "{markers}"
  secret        = var.token
  count         = 2
  delay_seconds = 2
}}
""",
    )
    proc = cli.popen("apply", "-auto-approve", "-parallelism=1", TRAINFORM_VAR_token=SECRET)
    wal = cli.cwd / ".trainform" / "state.db-wal"
    try:
        wait_until(lambda: (markers / "compute.slow[0].json").exists(), proc, "the first create")
        # the first resource is recorded and the second is being created
        assert wal.exists(), "expected a write-ahead log while the apply holds state open"
        assert files_holding(cli.cwd / ".trainform", SECRET.encode()) == []
    finally:
        out, err = finish(proc)
    assert proc.returncode == 0, out + err
    assert SECRET not in out + err
    assert files_holding(cli.cwd / ".trainform", SECRET.encode()) == []


# ---------------------------------------------------------------------------- stale plans

PLAN_CONFIG = """\
variable "token" {{
  type      = string
  sensitive = true
}}

compute "a" {{
  type       = "example"
  marker_dir = "{markers}"
  secret     = var.token
  size       = 1
}}

compute "b" {{
  type       = "example"
  marker_dir = "{markers}"
  size       = 1
}}
"""


def plan_setup(cli, tmp_path) -> Path:
    markers = tmp_path / "markers"
    cli.write("main.train.hcl", PLAN_CONFIG.format(markers=markers))
    cli.env["TRAINFORM_VAR_token"] = SECRET
    return markers


def marker_size(markers: Path, name: str) -> int:
    return json.loads((markers / f"{name}.json").read_text())["size"]


def test_plan_made_stale_by_another_apply_is_refused(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = plan_setup(cli, tmp_path)
    ok(cli("plan", "-out=old.bin"))
    ok(cli("apply", "-auto-approve", "-target=compute.b"))  # someone else applies meanwhile
    result = refused(cli("apply", "old.bin"), "stale")
    assert "Apply complete" not in result.out
    assert not (markers / "compute.a.json").exists(), "a stale plan must not be applied at all"
    assert state_list(cli) == ["compute.b"]

    # a fresh plan applies
    ok(cli("plan", "-out=new.bin"))
    ok(cli("apply", "new.bin"))
    assert state_list(cli) == ["compute.a", "compute.b"]
    # and a plan file applies once: afterwards the state has moved on
    refused(cli("apply", "new.bin"), "stale")


def test_plan_made_stale_by_a_config_edit_is_refused(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = plan_setup(cli, tmp_path)
    ok(cli("apply", "-auto-approve"))
    path = cli.cwd / "main.train.hcl"
    path.write_text(path.read_text().replace("size       = 1", "size       = 2", 1))
    ok(cli("plan", "-out=edit.bin"))
    path.write_text(path.read_text().replace("size       = 2", "size       = 3", 1))
    result = refused(cli("apply", "edit.bin"), "stale", "main.train.hcl")
    assert "Apply complete" not in result.out
    assert marker_size(markers, "compute.a") == 1

    # adding a configuration file also makes it stale
    path.write_text(path.read_text().replace("size       = 3", "size       = 2", 1))
    ok(cli("plan", "-out=edit.bin"))
    cli.write("extra.train.hcl", "# nothing yet\n")
    refused(cli("apply", "edit.bin"), "stale", "extra.train.hcl")
    (cli.cwd / "extra.train.hcl").unlink()
    ok(cli("apply", "edit.bin"))
    assert marker_size(markers, "compute.a") == 2


def test_plan_made_stale_by_a_variable_file_edit_is_refused(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = plan_setup(cli, tmp_path)
    path = cli.cwd / "main.train.hcl"
    path.write_text(
        path.read_text().replace(
            'size       = 1\n}\n\ncompute "b"', 'size       = var.size\n}\n\ncompute "b"'
        )
        + 'variable "size" {\n  type = number\n}\n'
    )
    cli.write("trainform.tfvars", "size = 4\n")
    ok(cli("plan", "-out=vars.bin"))
    cli.write("trainform.tfvars", "size = 5\n")
    refused(cli("apply", "vars.bin"), "stale", "trainform.tfvars")
    assert not markers.exists()


def test_saved_plan_with_a_different_sensitive_value_is_refused(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = plan_setup(cli, tmp_path)
    ok(cli("plan", "-out=plan.bin"))
    result = refused(cli("apply", "plan.bin", TRAINFORM_VAR_token="something-else"), "token")
    assert "differs" in result.err
    assert SECRET not in result.all and "something-else" not in result.all
    assert not markers.exists()
    assert state_list(cli) == []
    # with the value it was made with, it applies
    ok(cli("apply", "plan.bin"))
    assert (markers / "compute.a.json").is_file()


def test_saved_plan_without_the_sensitive_value_is_a_clear_error(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = plan_setup(cli, tmp_path)
    ok(cli("plan", "-out=plan.bin"))
    del cli.env["TRAINFORM_VAR_token"]
    result = refused(cli("apply", "plan.bin", input=""), "token")
    assert result.err.count("Error:") == 1
    assert "TRAINFORM_VAR_token" in result.err or "--var token" in result.err
    assert not markers.exists()
    assert state_list(cli) == []


def test_saved_plan_keeps_non_sensitive_values_it_was_made_with(plugin_cli, tmp_path):
    """Variables are fixed in the plan: applying it without repeating --var applies exactly
    what was reviewed."""
    cli = plugin_cli
    markers = plan_setup(cli, tmp_path)
    path = cli.cwd / "main.train.hcl"
    path.write_text(
        path.read_text().replace(
            'size       = 1\n}\n\ncompute "b"', 'size       = var.size\n}\n\ncompute "b"'
        )
        + 'variable "size" {\n  type    = number\n  default = 1\n}\n'
    )
    ok(cli("plan", "-out=plan.bin", "-var", "size=7"))
    ok(cli("apply", "plan.bin"))
    assert marker_size(markers, "compute.a") == 7


# ---------------------------------------------------------------------------- interruption


def slow_config(markers: Path, count: int = 4, delay: float = 1.5) -> str:
    return f"""\
variable "token" {{
  type      = string
  sensitive = true
}}

compute "slow" {{
  type          = "example"
  marker_dir    = "{markers}"
  count         = {count}
  delay_seconds = {delay}
  secret        = var.token
}}
"""


def lock_rows(cli) -> list[tuple]:
    db = sqlite3.connect(cli.cwd / ".trainform" / "state.db", timeout=10)
    try:
        return db.execute("SELECT id, pid FROM lock").fetchall()
    finally:
        db.close()


def test_kill_9_during_apply_then_apply_again_converges(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    cli.write("main.train.hcl", slow_config(markers))
    cli.env["TRAINFORM_VAR_token"] = SECRET
    proc = cli.popen("apply", "-auto-approve", "-parallelism=1")
    try:
        wait_until(lambda: (markers / "compute.slow[0].json").exists(), proc, "the first create")
        proc.send_signal(signal.SIGKILL)
    finally:
        finish(proc)
    assert proc.returncode == -signal.SIGKILL

    # the dead process's lock is still recorded ...
    assert [pid for _, pid in lock_rows(cli)] == [proc.pid]
    # ... state says what was done: the finished one, and the one caught mid-create
    assert "compute.slow[0]" in state_list(cli)
    assert "compute.slow[3]" not in state_list(cli)
    # nothing secret in what the killed process left behind (WAL included)
    assert files_holding(cli.cwd / ".trainform", SECRET.encode()) == []

    db = sqlite3.connect(cli.cwd / ".trainform" / "state.db", timeout=10)
    statuses = dict(db.execute("SELECT address, status FROM resources").fetchall())
    db.close()
    assert set(statuses.values()) <= {"ready", "pending"}, statuses

    # ... and taken over automatically: no force-unlock needed
    again = ok(cli("apply", "-auto-approve", "-parallelism=4"))
    assert "Apply complete!" in again.out
    # one caught mid-create is explained as such, not blamed on someone else
    if "pending" in statuses.values():
        assert "interrupted apply" in again.out
    assert "outside trainform" not in again.out
    ok(cli("plan", "--detailed-exitcode"), 0)
    assert sorted(p.name for p in markers.iterdir()) == [
        f"compute.slow[{i}].json" for i in range(4)
    ]
    assert state_list(cli) == [f"compute.slow[{i}]" for i in range(4)]
    assert lock_rows(cli) == []


def test_sigint_during_apply_stops_cleanly_and_a_rerun_converges(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    cli.write("main.train.hcl", slow_config(markers, count=4, delay=1.5))
    cli.env["TRAINFORM_VAR_token"] = SECRET
    proc = cli.popen("apply", "-auto-approve", "-parallelism=1")
    try:
        wait_until(lambda: (markers / "compute.slow[0].json").exists(), proc, "the first create")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode not in (0, None), out + err
    assert proc.returncode != -signal.SIGINT, (
        "it should exit on its own terms, not die of the signal"
    )
    assert "Traceback" not in out + err
    assert "interrupt" in (out + err).lower()
    assert "not started" in out

    done = sorted(p.name for p in markers.iterdir())
    assert "compute.slow[3].json" not in done, "the apply went on after the interrupt"
    # state records exactly the completed ones
    assert state_list(cli) == [name.removesuffix(".json") for name in done]
    assert lock_rows(cli) == [], "the lock must be released"

    ok(cli("apply", "-auto-approve"))
    ok(cli("plan", "--detailed-exitcode"), 0)
    assert state_list(cli) == [f"compute.slow[{i}]" for i in range(4)]
    assert len(list(markers.iterdir())) == 4


# ---------------------------------------------------------------------------- failures


FAILING_CONFIG = """\
compute "bad" {{
  type       = "example"
  marker_dir = "{markers}"
  fail       = {fail}
}}

compute "independent" {{
  type       = "example"
  marker_dir = "{markers}"
}}

compute "dependent" {{
  type       = "example"
  marker_dir = "{markers}"
  depends_on = [compute.bad]
}}
"""


def test_failing_resource_is_contained_tainted_and_replaced(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    path = cli.write("main.train.hcl", FAILING_CONFIG.format(markers=markers, fail="true"))

    result = cli("apply", "-auto-approve")
    assert result.code == 1, result.all
    assert "Traceback" not in result.all
    assert "compute.bad" in result.out and "failing as asked" in result.out
    assert "skipped" in result.out and "compute.dependent" in result.out
    assert sorted(p.name for p in markers.iterdir()) == ["compute.independent.json"]

    assert state_list(cli) == ["compute.bad", "compute.independent"]
    shown = json.loads(ok(cli("show", "--json")).out)["values"]["root_module"]["resources"]
    status = {r["address"]: r.get("tainted", False) for r in shown}
    assert status == {"compute.bad": True, "compute.independent": False}
    assert "tainted" in ok(cli("state", "show", "compute.bad")).out

    # nothing changes for the failure by itself; fixing the config replaces the tainted one
    path.write_text(FAILING_CONFIG.format(markers=markers, fail="false"))
    plan = ok(cli("plan", "--detailed-exitcode"), 2).out
    assert "tainted" in plan
    assert "outside trainform" not in plan, "trainform itself failed to create it"
    changes = {
        c["address"]: c["change"]["actions"]
        for c in json.loads(ok(cli("plan", "--json")).out)["resource_changes"]
    }
    assert changes["compute.bad"] in (["create"], ["delete", "create"])
    assert changes["compute.dependent"] == ["create"]
    assert changes["compute.independent"] == ["no-op"]

    ok(cli("apply", "-auto-approve"))
    ok(cli("plan", "--detailed-exitcode"), 0)
    shown = json.loads(ok(cli("show", "--json")).out)["values"]["root_module"]["resources"]
    status = {r["address"]: r.get("tainted", False) for r in shown}
    assert status == dict.fromkeys(
        ["compute.bad", "compute.dependent", "compute.independent"], False
    )
    assert len(list(markers.iterdir())) == 3


# ---------------------------------------------------------------------------- prevent_destroy

GUARDED = """\
workspace "keep" {{
  description = "precious"
  lifecycle {{
    prevent_destroy = true
  }}
}}

compute "scratch" {{
  type       = "example"
  marker_dir = "{markers}"
}}
"""


def test_prevent_destroy_refuses_destroy_naming_the_address(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    cli.write("main.train.hcl", GUARDED.format(markers=markers))
    ok(cli("apply", "-auto-approve"))

    for args in (
        ("destroy", "-auto-approve"),
        ("plan", "-destroy"),
        ("apply", "-destroy", "-auto-approve"),
    ):
        result = refused(cli(*args), "workspace.keep", "prevent_destroy")
        assert result.err.count("Error:") == 1
    assert state_list(cli) == ["compute.scratch", "workspace.keep"]
    assert (markers / "compute.scratch.json").is_file()

    # destroying only what is not protected works
    ok(cli("destroy", "-auto-approve", "-target=compute.scratch"))
    assert state_list(cli) == ["workspace.keep"]
    assert not (markers / "compute.scratch.json").exists()


def test_prevent_destroy_refuses_a_replacement(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    cli.write("main.train.hcl", GUARDED.format(markers=markers))
    ok(cli("apply", "-auto-approve"))
    refused(cli("plan", "-replace=workspace.keep"), "workspace.keep", "prevent_destroy")
    refused(cli("apply", "-auto-approve", "-replace=workspace.keep"), "workspace.keep")
    ok(cli("plan", "--detailed-exitcode"), 0)
