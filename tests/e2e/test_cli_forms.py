"""The command line as Terraform users and CI scripts write it, through the real CLI: every
boolean flag in Terraform's forms (`-input=false`, `-lock=false`, `-refresh=false`,
`-auto-approve`, `-detailed-exitcode`, one or two dashes), usage errors that exit 1 (exit 2
means only "changes present"), the confirmation prompt on a real pseudo-terminal, hints that
carry `-C DIR`, no state file left behind by a plan, and the README's CI recipe run verbatim.
"""

from __future__ import annotations

import dataclasses
import os
import pty
import re
import select
import shlex
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import CLI, Result, failed, ok

from trainform.providers.base import ResourceState
from trainform.state.sqlite import SQLiteStateStore

README = Path(__file__).resolve().parents[2] / "README.md"

SMALL = """\
workspace "main" {
}

compute "local" {
  type = "local"
}
"""

REQUIRED = """\
variable "team" {
  type = string
}

workspace "main" {
  description = "of ${var.team}"
}
"""


def state_db(cli: CLI) -> Path:
    return cli.cwd / ".trainform" / "state.db"


def applied(cli: CLI, text: str = SMALL) -> CLI:
    cli.write("main.train.hcl", text)
    ok(cli("apply", "-auto-approve"))
    return cli


def lock_from_elsewhere(cli: CLI) -> None:
    """A lock held by a process on another host, which no command may take over."""
    db = sqlite3.connect(state_db(cli))
    with db:
        db.execute(
            "INSERT INTO lock (name, id, who, operation, created, pid, host, pid_start) "
            "VALUES ('state', 'lock-from-elsewhere', 'alice', 'apply', "
            "'2024-01-01T00:00:00+00:00', 4242, 'other-host.example', '')"
        )
    db.close()


ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def on_a_terminal(
    cli: CLI, *args: str, answers: tuple[tuple[str, str], ...] = (), timeout: float = 120
) -> Result:
    """Run the CLI with a pseudo-terminal as stdin, stdout and stderr; when the text of an
    answer's prompt appears, type the answer. The result's ``out`` is everything the
    terminal showed (ANSI codes removed, one newline per line)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainform", *args],
        cwd=cli.cwd,
        env=cli.env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    shown = b""
    answered = 0  # how much of the output the answers so far have consumed
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"trainform {' '.join(args)} did not finish:\n{shown.decode()}")
            if pending and pending[0][0].encode() in shown[answered:]:
                os.write(master, pending.pop(0)[1].encode() + b"\n")
                answered = len(shown)
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal has closed it
                break
            if not chunk:
                break
            shown += chunk
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = ANSI.sub(b"", shown).decode(errors="replace").replace("\r\n", "\n").replace("\r", "")
    assert not pending, f"never asked {pending[0][0]!r}:\n{text}"
    return Result(code, text, "")


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


# ---------------------------------------------------------------------------- flag forms


def test_the_readmes_plan_line_for_ci(cli):
    cli.write("main.train.hcl", SMALL)
    result = ok(cli("plan", "-input=false", "-out=plan.bin", "-detailed-exitcode"), 2)
    assert "workspace.main will be created" in result.out
    assert (cli.cwd / "plan.bin").is_file()


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        (["-detailed-exitcode"], 2),
        (["--detailed-exitcode"], 2),
        (["-detailed-exitcode=true"], 2),
        (["--detailed-exitcode=TRUE"], 2),
        (["-detailed-exitcode=1"], 2),
        (["-detailed-exitcode=false"], 0),
        (["-detailed-exitcode", "-detailed-exitcode=false"], 0),
        (["-detailed-exitcode=f", "--detailed-exitcode"], 2),
        (["-input=false", "-detailed-exitcode"], 2),
        (["--input=false", "-detailed-exitcode"], 2),
        (["-input=true", "-detailed-exitcode"], 2),
        (["--no-input", "-detailed-exitcode"], 2),
        (["-lock=false", "-detailed-exitcode"], 2),
        (["--lock=true", "-detailed-exitcode"], 2),
        (["-refresh=false", "-detailed-exitcode"], 2),
        (["-refresh", "--refresh=0", "-refresh=t", "-detailed-exitcode"], 2),
    ],
)
def test_plan_takes_terraforms_boolean_forms(cli, flags, code):
    cli.write("main.train.hcl", SMALL)
    result = ok(cli("plan", *flags), code)
    assert "Plan: 2 to add, 0 to change, 0 to destroy" in result.out, result.all


def test_auto_approve_forms(cli):
    cli.write("main.train.hcl", SMALL)
    for refused in (["-auto-approve=false"], ["-auto-approve", "--auto-approve=false"]):
        failed(cli("apply", *refused), "refusing to perform these actions without confirmation")
    assert not state_db(cli).exists()
    assert "Apply complete!" in ok(cli("apply", "-auto-approve=true")).out
    cli.write(
        "main.train.hcl",
        SMALL.replace("workspace", 'compute "more" {\n  type = "local"\n}\n\nworkspace'),
    )
    assert "1 added" in ok(cli("apply", "--auto-approve")).out
    assert "Destroy complete!" in ok(cli("destroy", "-auto-approve")).out


def test_input_false_never_asks_and_input_true_asks_on_a_terminal(cli):
    cli.write("main.train.hcl", REQUIRED)
    for flag in ("-input=false", "--input=false", "--no-input", "-input=0"):
        result = on_a_terminal(cli, "plan", flag)
        assert result.code == 1, result.out
        assert "TRAINFORM_VAR_team" in result.out
        assert "var.team" not in result.out.split("Error")[0], "it asked anyway"
    asked = on_a_terminal(cli, "plan", "-input=true", answers=(("var.team", "vision"),))
    assert asked.code == 0, asked.out
    assert '"of vision"' in asked.out


def test_lock_false_plans_and_applies_past_a_held_lock(cli, tmp_path):
    applied(cli)
    lock_from_elsewhere(cli)
    failed(cli("plan"), "other-host.example")
    failed(cli("plan", "-lock=true"), "other-host.example")
    ok(cli("plan", "-lock=false", "-detailed-exitcode"), 0)
    ok(cli("plan", "--lock=false", "-detailed-exitcode"), 0)
    cli.write(
        "main.train.hcl",
        SMALL.replace("workspace", 'compute "more" {\n  type = "local"\n}\n\nworkspace'),
    )
    assert "1 added" in ok(cli("apply", "-lock=false", "-auto-approve")).out
    ok(cli("refresh", "-lock=false"))
    assert "Destroy complete! Resources: 3 destroyed." in lines(
        ok(cli("destroy", "-lock=false", "-auto-approve")).out
    )
    # skipping the lock left the holder's lock alone
    refused = failed(cli("plan"), "other-host.example")
    # and the hint to remove it can be pasted as it is, -C included
    elsewhere = dataclasses.replace(cli, cwd=tmp_path)
    refused = failed(elsewhere("-C", str(cli.cwd), "plan"), "other-host.example")
    assert f"`trainform -C {shlex.quote(str(cli.cwd))} force-unlock lock-from-elsewhere`" in (
        refused.err
    )
    assert "trainform force-unlock" not in refused.err


def test_refresh_false_plans_without_reading_the_real_world(cli):
    import shutil

    applied(cli)
    shutil.rmtree(cli.cwd / ".trainform" / "workspaces" / "main")
    for flag in ("-refresh=false", "--refresh=false", "-refresh=F"):
        ok(cli("plan", flag, "-detailed-exitcode"), 0)
    for flag in ("-refresh=true", "-refresh", "--refresh=1"):
        out = ok(cli("plan", flag, "-detailed-exitcode"), 2).out
        assert "workspace.main" in out


# ---------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["plan", "-input=maybe"], ["-input", "maybe", "true", "false"]),
        (["plan", "--lock=yes"], ["--lock", "yes"]),
        (["apply", "-auto-approve=sure"], ["-auto-approve", "sure"]),
        (["plan", "-detailed-exitcode=2"], ["-detailed-exitcode"]),
        (["plan", "--bogus"], ["--bogus"]),
        (["plan", "--parallelism=0"], ["parallelism"]),
        (["plan", "--destroy", "--refresh-only"], ["cannot be combined"]),
        (["apply", "plan.bin", "--target=workspace.main"], ["saved plan"]),
        (["nosuch"], ["nosuch"]),
        (["state", "rm"], ["Missing argument"]),
        (["state", "list", "--bogus"], ["--bogus"]),
        (["runs", "show"], ["Missing argument"]),
        (["runs", "list", "--bogus"], ["--bogus"]),
        (["sweeps", "show"], ["Missing argument"]),
        (["compute", "show"], ["Missing argument"]),
        (["runs"], ["Commands:"]),
    ],
)
def test_a_usage_error_exits_1(cli, args, needles):
    cli.write("main.train.hcl", SMALL)
    result = cli(*args)
    assert result.code == 1, f"exit {result.code}\n{result.all}"
    assert "Traceback" not in result.all
    for needle in needles:
        assert needle in result.all, f"{needle!r} not in\n{result.all}"
    assert not state_db(cli).exists()


# ---------------------------------------------------------------------------- the prompt


def test_no_at_the_prompt_cancels_apply_and_destroy(cli):
    cli.write("main.train.hcl", SMALL)
    said_no = on_a_terminal(cli, "apply", answers=(("Enter a value", "no"),))
    assert said_no.code == 1, said_no.out
    assert "Apply cancelled." in lines(said_no.out)
    assert "Perform these actions" not in said_no.out
    assert "Apply complete" not in said_no.out
    assert not state_db(cli).exists()

    said_yes = on_a_terminal(cli, "apply", answers=(("Enter a value", "yes"),))
    assert said_yes.code == 0, said_yes.out
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in lines(said_yes.out)

    for answer in ("no", "", "y"):
        said_no = on_a_terminal(cli, "destroy", answers=(("Enter a value", answer),))
        assert said_no.code == 1, said_no.out
        assert "Destroy cancelled." in lines(said_no.out)
        assert ok(cli("state", "list")).out.split() == ["compute.local", "workspace.main"]

    said_yes = on_a_terminal(cli, "destroy", answers=(("Enter a value", "yes"),))
    assert said_yes.code == 0, said_yes.out
    assert lines(said_yes.out)[-1] == "Destroy complete! Resources: 2 destroyed."
    assert "Apply complete" not in said_yes.out
    assert ok(cli("state", "list")).out.split() == []


# ---------------------------------------------------------------------------- hints with -C


def test_hints_carry_the_chdir_and_can_be_pasted(cli, tmp_path):
    folder = tmp_path / "my config"
    folder.mkdir()
    there = dataclasses.replace(cli, cwd=folder)
    there.write("main.train.hcl", SMALL)
    here = dataclasses.replace(cli, cwd=tmp_path)

    def paste(hint: str) -> Result:
        words = shlex.split(hint)
        assert words[:3] == ["trainform", "-C", str(folder)], hint
        return here(*words[1:])

    out = ok(here("-C", str(folder), "plan", "-out=plan.bin")).out
    (hint,) = re.findall(r"^\s+(trainform .*)$", out, re.M)
    assert hint == f"trainform -C {shlex.quote(str(folder))} apply plan.bin"

    # The state moves on before the saved plan is applied: the library's "run `trainform
    # plan` again" gets the -C as well.
    ok(here("-C", str(folder), "apply", "-auto-approve"))
    stale = failed(paste(hint), "stale")
    (again,) = re.findall(r"`(trainform [^`]*)`", stale.err)
    assert again == f"trainform -C {shlex.quote(str(folder))} plan"
    ok(paste(again))

    there.write("main.train.hcl", SMALL + 'compute "more" {\n  type = "local"\n}\n')
    out = ok(here("-C", str(folder), "plan", "-out=plan.bin")).out
    (hint,) = re.findall(r"^\s+(trainform .*)$", out, re.M)
    assert "Apply complete! Resources: 1 added" in ok(paste(hint)).out

    # Without a terminal, apply points at `trainform -C DIR apply FILE`.
    there.write("main.train.hcl", SMALL)
    refused = failed(here("-C", str(folder), "apply"), "not a terminal")
    assert f"`trainform -C {shlex.quote(str(folder))} apply FILE`" in refused.err


def test_detached_run_hint_carries_the_chdir(cli, tmp_path):
    cli.write(
        "main.train.hcl",
        SMALL
        + 'run "train" {\n  experiment = "tests"\n  compute    = compute.local\n'
        + '  source_dir = "src"\n'
        + '  script     = "train.py"\n}\n',
    )
    cli.write("src/train.py", "import time\ntime.sleep(2)\nprint('trained')\n")
    here = dataclasses.replace(cli, cwd=tmp_path)
    out = ok(here("-C", str(cli.cwd), "apply", "-auto-approve", "--detach")).out
    (hint,) = re.findall(r"follow it with `([^`]*)`", out)
    assert hint == f"trainform -C {shlex.quote(str(cli.cwd))} runs wait run.train"
    waited = ok(here(*shlex.split(hint)[1:], timeout=60))
    assert "trained" in waited.out and "completed" in waited.all


# ---------------------------------------------------------------------------- no empty state


def test_a_plan_leaves_no_state_file(cli, tmp_path):
    # a mistake found while loading the configuration
    cli.write("main.train.hcl", 'compute "a" {\n  type = "local"\n  max_concurent_runs = 2\n}\n')
    failed(cli("plan"), "max_concurent_runs")
    assert not (cli.cwd / ".trainform").exists()

    # a missing required variable
    cli.write("main.train.hcl", REQUIRED)
    failed(cli("plan", "-input=false"), "TRAINFORM_VAR_team")
    assert not (cli.cwd / ".trainform").exists()

    # a mistake found only after the state lock was taken: with a lock held elsewhere, the
    # same configuration stops at the lock, so planning fails after taking it
    late = 'workspace "main" {\n  description = file("missing.txt")\n}\n'
    locked = CLI(tmp_path / "locked", cli.env)
    locked.cwd.mkdir()
    applied(locked, 'workspace "other" {\n}\n')
    lock_from_elsewhere(locked)
    locked.write("main.train.hcl", late)
    failed(locked("plan"), "other-host.example")
    cli.write("main.train.hcl", late)
    failed(cli("plan"), "missing.txt")
    assert not (cli.cwd / ".trainform").exists()

    # a plan that succeeds records nothing either, locked or not
    cli.write("main.train.hcl", SMALL)
    ok(cli("plan", "-detailed-exitcode"), 2)
    ok(cli("plan", "-lock=false", "-out=plan.bin"))
    assert not (cli.cwd / ".trainform").exists()
    ok(cli("apply", "plan.bin"))
    assert state_db(cli).is_file()
    ok(cli("plan", "-detailed-exitcode"), 0)
    assert state_db(cli).is_file()


def test_a_writer_waiting_on_a_deleted_state_file_records_in_the_new_one(tmp_path):
    """The state file made only for a lock is deleted when the lock is released with nothing
    recorded; a process that opened it meanwhile and waits for the lock must notice, and
    record in a file at the path, not in the deleted one. (Two stores in one process stand
    for two processes: each has its own SQLite connection.)"""
    path = tmp_path / ".trainform" / "state.db"
    first = SQLiteStateStore(path, create=False)
    assert not path.exists()
    lock = first.acquire_lock("plan")
    assert path.is_file()
    opened = threading.Event()
    taken = threading.Event()
    problems: list[BaseException] = []

    def writer() -> None:
        try:
            second = SQLiteStateStore(path, create=False)  # opens the file `first` made
            opened.set()
            held = second.acquire_lock("apply", 30)
            taken.set()
            second.put_resource(
                ResourceState(
                    address="workspace.main",
                    kind="workspace",
                    name="main",
                    key=None,
                    provider="workspace",
                    attributes={},
                    computed={},
                    dependencies=(),
                    status="ready",
                )
            )
            second.release_lock(held)
            second.close()
        except BaseException as exc:
            problems.append(exc)
            raise

    waiter = threading.Thread(target=writer)
    waiter.start()
    assert opened.wait(30)
    time.sleep(0.6)
    assert not taken.is_set(), "the lock was taken while held"
    first.release_lock(lock)  # nothing recorded: the file goes
    waiter.join(30)
    assert not problems, problems
    assert taken.is_set(), "the waiter never got the lock"
    first.close()
    again = SQLiteStateStore(path, create=False)
    assert list(again.resources()) == ["workspace.main"]
    assert again._holder() is None
    again.close()


# ---------------------------------------------------------------------------- README's CI recipe


def readme_ci_jobs() -> list[str]:
    """The README's CI recipe: its sh block, one job per paragraph (pull request, approval)."""
    section = README.read_text().split("## CI usage", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "no sh block under ## CI usage in README.md"
    return [job for job in re.split(r"\n\s*\n", found.group(1).strip()) if job.strip()]


CI_CONFIG = """\
variable "api_token" {
  type      = string
  sensitive = true
}

workspace "main" {
}

compute "local" {
  type = "local"
}

output "token" {
  value     = var.api_token
  sensitive = true
}
"""


def test_the_readmes_ci_recipe_verbatim(cli, tmp_path):
    review, approval = readme_ci_jobs()
    assert "-detailed-exitcode" in review and "apply plan.bin" in approval
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "trainform").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trainform "$@"\n')
    (bin_dir / "trainform").chmod(0o755)
    cli.write("main.train.hcl", CI_CONFIG)
    env = {**cli.env, "PATH": f"{bin_dir}{os.pathsep}{cli.env['PATH']}"}

    def job(script: str, **extra: str) -> Result:
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=cli.cwd,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    token = "ci-token-8d2e"
    # The pull request's job has the secret in its environment; its exit code is the plan's.
    pr = job(review + '\nexit "$code"\n', TRAINFORM_VAR_api_token=token)
    ok(pr, 2)
    plan_txt = (cli.cwd / "plan.txt").read_text()
    assert "workspace.main will be created" in plan_txt
    assert token not in plan_txt and token not in (cli.cwd / "plan.bin").read_text(errors="replace")

    # After approval: a different secret is refused, the reviewed one applies the plan.
    failed(job(approval, TOKEN="not-the-planned-one"), "api_token")
    assert not state_db(cli).exists()
    applied_ = ok(job(approval, TOKEN=token))
    assert "Apply complete! Resources: 2 added" in applied_.out
    assert ok(cli("state", "list")).out.split() == ["compute.local", "workspace.main"]

    # Nothing left to do: the next pull request's plan exits 0.
    ok(job(review + '\nexit "$code"\n', TRAINFORM_VAR_api_token=token), 0)
    assert "No changes" in (cli.cwd / "plan.txt").read_text()
