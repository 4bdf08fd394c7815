"""Mistakes a user makes, through the real CLI: each one gives exactly one clear diagnostic
naming file:line:column, exit code 1, no Python traceback, and changes nothing. Also the
state lock as another process sees it.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from pathlib import Path

import pytest


def failed(result, *needles: str):
    """Exactly one error, exit 1, no traceback, and each needle in stderr."""
    assert result.code == 1, f"exit {result.code}\n{result.out}\n{result.err}"
    assert "Traceback" not in result.all
    assert result.err.count("Error:") == 1, result.err
    for needle in needles:
        assert needle in result.err, f"{needle!r} not in\n{result.err}"
    return result


def located(result, where: str, quoted: bool = True) -> None:
    """The diagnostic names FILE:LINE:COLUMN (``where`` is a regular expression) and quotes
    that line of the file."""
    found = re.search(rf"\b({where})\b", result.err)
    assert found, f"{where} not in\n{result.err}"
    if quoted:
        line = int(found.group(1).split(":")[1])
        assert re.search(rf"^\s+{line} \| ", result.err, re.M), result.err


# (files, where, needles): one configuration mistake each
CONFIG_MISTAKES = {
    "misspelt-attribute": (
        {"main.train.hcl": 'compute "a" {\n  type = "local"\n  max_concurent_runs = 2\n}\n'},
        "main.train.hcl:3:3",
        ["max_concurent_runs", 'did you mean "max_concurrent_runs"'],
    ),
    "misspelt-block-type": (
        {"main.train.hcl": 'workspace "w" {\n}\n\ncompte "a" {\n  type = "local"\n}\n'},
        "main.train.hcl:4:1",
        ["compte", 'did you mean "compute"'],
    ),
    "dependency-cycle": (
        {
            "main.train.hcl": (
                'compute "a" {\n  type       = "local"\n  depends_on = [compute.b]\n}\n\n'
                'compute "b" {\n  type        = "local"\n  description = compute.a.type\n}\n'
            )
        },
        r"main\.train\.hcl:(1|6):1",
        ["cycle", "compute.a", "compute.b"],
    ),
    "unknown-reference": (
        {
            "main.train.hcl": (
                'variable "team" {\n  default = "x"\n}\n\n'
                'compute "a" {\n  type        = "local"\n  description = var.taem\n}\n'
            )
        },
        "main.train.hcl:7:17",
        ["var.taem", 'did you mean "team"'],
    ),
    "unknown-resource-reference": (
        {"main.train.hcl": 'output "o" {\n  value = compute.gpu.facts.cpus\n}\n'},
        "main.train.hcl:2:11",
        ["compute.gpu"],
    ),
    "string-for-a-number": (
        {"main.train.hcl": 'compute "a" {\n  type = "local"\n  max_concurrent_runs = "lots"\n}\n'},
        "main.train.hcl:3:25",
        ["max_concurrent_runs", "number"],
    ),
    "malformed-hcl": (
        {"main.train.hcl": 'compute "a" {\n  type = "local"\n  description = "unclosed\n}\n'},
        r"main\.train\.hcl:3:\d+",
        ["syntax"],
    ),
    "malformed-hcl-missing-brace": (
        {"main.train.hcl": 'compute "a" {\n  type = "local"\n\ncompute "b" {\n}\n'},
        # the end of the file, where the parser noticed (no line to quote)
        r"main\.train\.hcl:\d+:\d+",
        [],
    ),
    "malformed-yaml": (
        {"main.train.yaml": "compute:\n  a:\n    type: local\n   description: [oops\n"},
        r"main\.train\.yaml:4:\d+",
        ["YAML"],
    ),
    "misspelt-attribute-yaml": (
        {"main.train.yaml": "compute:\n  a:\n    type: local\n    max_concurent_runs: 2\n"},
        "main.train.yaml:4:5",
        ["max_concurent_runs", 'did you mean "max_concurrent_runs"'],
    ),
    "unknown-function": (
        {"main.train.hcl": 'compute "a" {\n  type = "local"\n  description = uper("x")\n}\n'},
        "main.train.hcl:3:17",
        ["uper", 'did you mean "upper"'],
    ),
    "unknown-compute-type": (
        {"main.train.hcl": 'compute "a" {\n  type = "locla"\n}\n'},
        "main.train.hcl:2:10",
        ["locla", 'did you mean "local"'],
    ),
}


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case", sorted(CONFIG_MISTAKES))
def test_configuration_mistake_gives_one_located_diagnostic(cli, case, command):
    files, where, needles = CONFIG_MISTAKES[case]
    for name, text in files.items():
        cli.write(name, text)
    result = failed(cli(command, input=""), *needles)
    located(result, where, quoted=case != "malformed-hcl-missing-brace")
    assert result.out.strip() == "", "nothing but the diagnostic may be printed"
    if command == "validate":
        assert not (cli.cwd / ".trainform").exists(), "validate must not create state"


def test_validate_json_reports_the_location(cli):
    import json

    cli.write("main.train.hcl", 'compute "a" {\n  type = "local"\n  max_concurent_runs = 2\n}\n')
    result = cli("validate", "--json")
    assert result.code == 1 and "Traceback" not in result.all
    data = json.loads(result.out)
    assert data["valid"] is False and data["error_count"] == 1
    (diag,) = data["diagnostics"]
    assert diag["range"]["filename"].endswith("main.train.hcl")
    assert diag["range"]["start"] == {"line": 3, "column": 3}


VARIABLE_CONFIG = """\
variable "team" {
  type = string
}

variable "nodes" {
  type    = number
  default = 1
}

compute "a" {
  type        = "local"
  count       = var.nodes
  description = var.team
}
"""


def test_missing_required_variable_without_a_tty(cli):
    cli.write("main.train.hcl", VARIABLE_CONFIG)
    for command in ("plan", "apply"):
        result = failed(cli(command, input=""), "team", "TRAINFORM_VAR_team")
        located(result, "main.train.hcl:1:1")
    assert cli("state", "list").out.strip() == ""


def test_bad_var_name(cli):
    cli.write("main.train.hcl", VARIABLE_CONFIG)
    result = failed(cli("plan", "--var", "tema=x", input=""), "tema", 'did you mean "team"')
    # the diagnostic points at the declaration it resembles
    located(result, "main.train.hcl:1:1")


def test_bad_var_value_type(cli):
    cli.write("main.train.hcl", VARIABLE_CONFIG)
    result = failed(
        cli("plan", "--var", "team=x", "--var", "nodes=many", input=""), "nodes", "number"
    )
    located(result, "main.train.hcl:5:1")


def test_var_without_a_value(cli):
    cli.write("main.train.hcl", VARIABLE_CONFIG)
    failed(cli("plan", "-var", "team", input=""), "NAME=VALUE")


def test_missing_var_file(cli):
    cli.write("main.train.hcl", VARIABLE_CONFIG)
    failed(cli("plan", "-var-file=nope.tfvars", input=""), "nope.tfvars")


def test_malformed_var_file(cli):
    cli.write("main.train.hcl", VARIABLE_CONFIG)
    cli.write("bad.tfvars", 'team = "x"\nnodes = \n')
    result = failed(cli("plan", "-var-file=bad.tfvars", input=""))
    assert "bad.tfvars:" in result.err


def test_no_configuration_files(cli):
    result = failed(cli("plan", input=""), "no configuration files")
    assert "init --example" in result.err


def test_apply_without_a_tty_refuses_and_changes_nothing(cli):
    cli.write("main.train.hcl", 'workspace "w" {\n}\n')
    result = failed(cli("apply", input=""), "auto-approve")
    assert "Apply complete" not in result.out
    assert not (cli.cwd / ".trainform" / "workspaces" / "w").exists()
    assert cli("state", "list").out.strip() == ""
    # a "yes" piped in is not a terminal's answer either
    result = failed(cli("apply", input="yes\n"), "auto-approve")
    assert cli("state", "list").out.strip() == ""
    assert not (cli.cwd / ".trainform" / "workspaces" / "w").exists()


def test_saved_plan_file_that_is_not_a_plan(cli):
    cli.write("main.train.hcl", 'workspace "w" {\n}\n')
    cli.write("junk.bin", "this is not a plan\n")
    failed(cli("apply", "junk.bin", input=""), "junk.bin", "not a trainform plan")
    failed(cli("apply", "missing.bin", input=""), "missing.bin", "does not exist")
    assert cli("state", "list").out.strip() == ""


def test_commands_on_an_unapplied_configuration(cli):
    cli.write("main.train.hcl", 'workspace "w" {\n}\n')
    for args in (("output",), ("state", "list"), ("show",), ("state", "show", "workspace.w")):
        failed(cli(*args, input=""), "nothing has been applied")
    assert not (cli.cwd / ".trainform").exists(), "looking must not create state"


# ---------------------------------------------------------------------------- the state lock


def slow_config(cli, markers: Path, delay: float = 3) -> None:
    cli.write(
        "main.train.hcl",
        f"""\
compute "slow" {{
  type          = "example"
  marker_dir    = "{markers}"
  delay_seconds = {delay}
}}
""",
    )


def wait_for_lock(cli, proc, deadline: float = 60) -> tuple[str, int, str]:
    """Poll the state database until a lock row appears; return (id, pid, host)."""
    db_path = cli.cwd / ".trainform" / "state.db"
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, f"the holder exited early: {proc.communicate()}"
        if db_path.exists():
            try:
                db = sqlite3.connect(db_path, timeout=5)
                try:
                    row = db.execute("SELECT id, pid, host FROM lock").fetchone()
                finally:
                    db.close()
            except sqlite3.OperationalError:
                row = None  # the table is not created yet
            if row:
                return row[0], row[1], row[2]
        time.sleep(0.05)
    raise AssertionError("the background apply never took the lock")


def finish(proc, timeout: float = 120) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return out, err


def test_second_apply_fails_naming_the_lock_holder(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    slow_config(cli, markers, delay=6)  # long enough for the three commands below
    holder = cli.popen("apply", "-auto-approve")
    try:
        lock_id, pid, host = wait_for_lock(cli, holder)
        assert pid == holder.pid

        second = failed(cli("apply", "-auto-approve", "--lock-timeout=1s", input=""), "lock")
        assert str(holder.pid) in second.err
        assert host in second.err and host == socket.gethostname()
        assert lock_id in second.err
        assert "apply" in second.err  # what the holder is doing

        # plans take the lock too, and a wrong id cannot break it
        failed(cli("plan", "-lock-timeout=0s", input=""), str(holder.pid))
        wrong = failed(cli("force-unlock", "-force", "not-the-id", input=""), "not-the-id")
        assert lock_id in wrong.err
        assert holder.poll() is None, "the holder finished too soon for this test to mean anything"
    finally:
        out, err = finish(holder)
    assert holder.returncode == 0, out + err
    assert (markers / "compute.slow.json").is_file()
    # the holder released its lock when it finished
    assert cli("plan", "--detailed-exitcode", input="").code == 0


def test_lock_timeout_waits_for_the_holder(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    slow_config(cli, markers, delay=2)
    holder = cli.popen("apply", "-auto-approve")
    try:
        wait_for_lock(cli, holder)
        waited = cli("apply", "-auto-approve", "-lock-timeout=90s", input="")
    finally:
        out, err = finish(holder)
    assert holder.returncode == 0, out + err
    assert waited.code == 0, waited.all
    assert "Traceback" not in waited.all
    # it waited, then found the holder had done the work
    assert "No changes" in waited.out


def test_force_unlock_a_lock_left_on_another_host(cli):
    cli.write("main.train.hcl", 'workspace "w" {\n}\n')
    assert cli("apply", "-auto-approve", input="").code == 0
    db = sqlite3.connect(cli.cwd / ".trainform" / "state.db")
    with db:
        db.execute(
            "INSERT INTO lock (name, id, who, operation, created, pid, host, pid_start) "
            "VALUES ('state', 'lock-from-elsewhere', 'alice', 'apply', "
            "'2024-01-01T00:00:00+00:00', 4242, 'other-host.example', '')"
        )
    db.close()

    refused = failed(cli("apply", "-auto-approve", input=""), "other-host.example", "4242")
    assert "force-unlock lock-from-elsewhere" in refused.err
    # a lock on another host is never taken over automatically
    failed(cli("plan", input=""), "other-host.example")

    failed(cli("force-unlock", "-force", "wrong-id", input=""), "wrong-id", "lock-from-elsewhere")
    failed(cli("plan", input=""), "other-host.example")  # still locked

    released = cli("force-unlock", "-force", "lock-from-elsewhere", input="")
    assert released.code == 0 and "Traceback" not in released.all
    assert "lock-from-elsewhere" in released.out

    assert cli("plan", "--detailed-exitcode", input="").code == 0
    failed(cli("force-unlock", "-force", "lock-from-elsewhere", input=""), "not locked")
