"""`trainform console` through the real CLI: expressions piped on stdin (variables, locals,
functions, facts recorded in state by an apply of the local compute, unknowns, sensitive
values, errors) and the interactive prompt on a pseudo-terminal (history, Ctrl-C, Ctrl-D)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import ok

SECRET = "s3cr3t-console-7d41"

CONFIG = """\
variable "team" {
  type    = string
  default = "ml"
}

variable "sizes" {
  type    = list(number)
  default = [1, 2]
}

variable "labels" {
  type    = map(string)
  default = { owner = "ada" }
}

variable "token" {
  type      = string
  sensitive = true
}

variable "region" {
  type = string
}

locals {
  name    = "box-${var.team}"
  bearer  = "Bearer ${var.token}"
  nested  = { list = [1, { k = "v" }], none = null }
}

workspace "main" {
  description = "team ${var.team}"
}

compute "box" {
  type = "local"
  tags = { team = var.team }
}
"""


def setup(cli):
    cli.write("main.train.hcl", CONFIG)
    cli.env["TRAINFORM_VAR_token"] = SECRET
    return cli


def console(cli, *lines: str, args: tuple[str, ...] = ()):
    return cli("console", *args, input="".join(line + "\n" for line in lines))


def test_piped_expressions_print_each_value_as_terraform_console(cli):
    setup(cli)
    result = ok(
        console(
            cli,
            "var.team",
            "local.name",
            'upper(var.team) == "ML"',
            "var.sizes",
            "var.labels",
            "local.nested",
            'tolist(concat(["a"], ["b"]))',
            "[for s in var.sizes : s * 1.5]",
            '"two\\nlines"',
            "1e20",
        )
    )
    assert result.out == (
        '"ml"\n'
        '"box-ml"\n'
        "true\n"
        "tolist([\n  1,\n  2,\n])\n"
        'tomap({\n  "owner" = "ada"\n})\n'
        '{\n  "list" = [\n    1,\n    {\n      "k" = "v"\n    },\n  ]\n  "none" = null\n}\n'
        'tolist([\n  "a",\n  "b",\n])\n'
        "[\n  1.5,\n  3,\n]\n"
        "<<EOT\ntwo\nlines\nEOT\n"
        "100000000000000000000\n"
    ), result.out
    assert result.err == ""


def test_variables_from_flags_and_environment_as_plan_takes_them(cli):
    setup(cli)
    cli.write("extra.tfvars", 'team = "from-file"\n')
    out = ok(console(cli, "var.team", "var.region", args=("-var=region=eu",))).out
    assert out == '"ml"\n"eu"\n'
    out = ok(console(cli, "var.team", args=("--var-file", "extra.tfvars"))).out
    assert out == '"from-file"\n'
    out = ok(cli("console", input="var.team\n", TRAINFORM_VAR_team="from-env")).out
    assert out == '"from-env"\n'


def test_values_known_only_after_apply_show_as_such(cli):
    setup(cli)
    out = ok(
        console(
            cli,
            "var.region",  # required, no value: unknown, never prompted for
            '"in ${var.region}"',
            "compute.box.facts.cpus",
            "compute.box.tags",
            "workspace.main.id",
        )
    ).out
    assert out == (
        "(known after apply)\n"
        "(known after apply)\n"
        "(known after apply)\n"
        '{\n  "team" = "ml"\n}\n'
        "(known after apply)\n"
    )
    assert not (cli.cwd / ".trainform" / "state.db").exists()  # config alone; nothing made


def test_facts_recorded_by_apply_are_read_from_state_without_writing_it(cli):
    setup(cli)
    ok(cli("apply", "-auto-approve", "-var=region=eu"))
    state = cli.cwd / ".trainform" / "state.db"
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    out = ok(
        console(
            cli,
            "compute.box.facts.cpus",
            "compute.box.facts.hostname",
            "compute.box.address",
            "length(workspace.main.id) > 0",
        )
    ).out
    assert out == f'{os.cpu_count()}\n"{socket.gethostname()}"\n"compute.box"\ntrue\n'
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before


def test_the_console_takes_no_lock_so_it_works_while_an_apply_holds_it(cli):
    setup(cli)
    ok(cli("apply", "-auto-approve", "-var=region=eu"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from trainform.state.sqlite import SQLiteStateStore\n"
            "s = SQLiteStateStore(Path('.trainform/state.db'))\n"
            "s.acquire_lock('apply', 0)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=cli.cwd,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert "locked" in ok(cli("plan", "-var=region=eu"), 1).err.lower()  # the lock is real
        assert ok(console(cli, "compute.box.facts.cpus")).out == f"{os.cpu_count()}\n"
    finally:
        holder.kill()
        holder.wait()


def test_sensitive_values_never_appear(cli):
    setup(cli)
    result = ok(
        console(
            cli,
            "var.token",
            "local.bearer",
            "length(var.token)",
            "upper(var.token)",
            "{ a = var.token, b = 1 }",
            "var",
            "local",
        )
    )
    # an object hides only its sensitive attribute, as Terraform marks values
    hidden = "(sensitive value)\n"
    shown = '{\n  "a" = (sensitive value)\n  "b" = 1\n}\n'
    assert result.out == hidden * 4 + shown + hidden * 2, result.out
    assert SECRET not in result.all and SECRET.upper() not in result.all
    # inside a resource, only the sensitive part is hidden, as Terraform does
    cli.write(
        "env.train.hcl",
        'environment "env" {\n  variables = { TOKEN = var.token, MODE = "train" }\n}\n',
    )
    result = ok(console(cli, "environment.env.variables", "environment.env.variables.MODE"))
    assert result.out == '{\n  "MODE" = "train"\n  "TOKEN" = (sensitive value)\n}\n"train"\n'
    assert SECRET not in result.all
    whole = ok(console(cli, "environment.env", "jsonencode(environment.env.variables)"))
    assert '"TOKEN" = (sensitive value)' in whole.out
    assert whole.out.endswith("}\n(sensitive value)\n") and SECRET not in whole.all
    # a failing expression over the secret quotes none of it
    failed = console(cli, "tonumber(var.token)")
    assert failed.code == 1
    assert SECRET not in failed.all and "Error:" in failed.err


def test_an_error_stops_a_piped_console_with_exit_1_as_terraform_does(cli):
    setup(cli)
    result = console(cli, '"before"', "var.teem", '"after"')
    assert result.code == 1, result
    # what came before was printed; as `terraform console` through a pipe, nothing after
    assert result.out == '"before"\n'
    assert "Error: no attribute 'teem'" in result.err
    assert "<console input>:1:5" in result.err
    assert "1 | var.teem" in result.err
    assert 'did you mean "team"' in result.err
    assert "Traceback" not in result.all

    syntax = console(cli, "upper(1")
    assert syntax.code == 1 and "syntax error" in syntax.err
    assert "<console input>:1:8" in syntax.err

    assert "unknown function 'uper'" in console(cli, 'uper("x")').err


def test_exit_ends_a_piped_console(cli):
    setup(cli)
    result = ok(console(cli, "1 + 1", "exit", "nope"))
    assert result.out == "2\n"


def test_an_invalid_configuration_is_reported_before_any_expression(cli):
    cli.write("main.train.hcl", "locals {\n  x = upper(1, 2)\n}\n")
    result = console(cli, "1")
    assert result.code == 1 and "main.train.hcl:2" in result.err
    assert result.out == ""


# ---------------------------------------------------------------------------- on a terminal


class Terminal:
    """`trainform console` on a pseudo-terminal: type lines, read what it shows."""

    def __init__(self, cli) -> None:
        env = {**cli.env, "TERM": "dumb"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cli.cwd)
            # as a shell's background job starts it (CI): Ctrl-C must still cancel a line
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            os.execvpe(sys.executable, [sys.executable, "-m", "trainform", "console"], env)
        self.out = b""

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            assert time.monotonic() < deadline, f"no {text!r} in {self.out!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.out += chunk
        assert text.encode() in self.out, f"no {text!r} in {self.out!r}"
        seen, _, self.out = self.out.partition(text.encode())
        return seen.decode(errors="replace") + text

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            with_data, _, _ = select.select([self.fd], [], [], 0.2)
            if with_data:
                with contextlib.suppress(OSError):
                    self.out += os.read(self.fd, 65536)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"console did not exit: {self.out!r}")


def test_interactive_prompt_with_history_ctrl_c_and_ctrl_d(cli):
    setup(cli)
    term = Terminal(cli)
    term.expect("> ")
    term.send(b'upper("abcxyz")\r')
    assert '"ABCXYZ"' in term.expect("> ")
    term.send(b"var.teem\r")  # an error is shown and the console goes on
    shown = term.expect("> ")
    assert "Error: no attribute 'teem'" in shown and "<console input>:1:5" in shown
    term.send(b"var.token\r")
    assert "(sensitive value)" in term.expect("> ")
    time.sleep(0.3)  # a person types after the prompt: readline is reading by then
    term.send(b"this line is cancelled")
    time.sleep(0.3)
    term.send(b"\x03")  # Ctrl-C
    term.expect("> ")
    term.send(b"1 + 2\r")
    assert "3" in term.expect("> ")
    term.send(b"\x04")  # Ctrl-D
    assert term.wait() == 0
    assert SECRET.encode() not in term.out

    history = cli.cwd / ".trainform" / "console_history"
    text = history.read_text()
    # the expressions typed, never what they evaluated to
    assert 'upper("abcxyz")' in text and "1 + 2" in text and "var.token" in text
    assert "ABCXYZ" not in text and SECRET not in text
    assert "this line is cancelled" not in text
    assert history.stat().st_mode & 0o077 == 0

    # the next session starts with that history, and `exit` ends it
    again = Terminal(cli)
    again.expect("> ")
    again.send(b"\x1b[A\r")  # up arrow: the last expression again
    assert "3" in again.expect("> ")
    again.send(b"exit\r")
    assert again.wait() == 0
    assert Path(history).read_text().count("1 + 2") >= 1


# ---------------------------------------------------------------------------- the README


def readme_block(marker: str, lang: str) -> str:
    """The first ```lang block after ``marker`` in the README."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(rf"^```{lang}\n(.*?)^```$", readme.split(marker, 1)[1], re.S | re.M)
    assert found, f"no {lang} block after {marker!r} in README.md"
    return found.group(1)


def test_the_readmes_console_and_plan_graph_lines_run_verbatim(cli):
    """On the README's first configuration, applied, its console and graph lines as they are."""
    cli.write("main.train.hcl", readme_block("## A first configuration", "hcl"))
    cli.env["TRAINFORM_VAR_api_token"] = SECRET
    cli.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), cli.env["PATH"]])
    ok(cli("apply", "-auto-approve"))
    script = readme_block("**Console and plan graph.**", "sh")
    proc = subprocess.run(
        ["sh", "-ec", script], cwd=cli.cwd, env=cli.env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{os.cpu_count()}\n(sensitive value)\n", proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    dot = (cli.cwd / "plan.dot").read_text()
    assert dot.startswith("digraph") and "compute.gpu[0]\\nno changes" in dot


def test_module_outputs_are_in_scope_and_sensitive_ones_hidden(cli):
    setup(cli)
    cli.write(
        "mod/main.train.hcl",
        'variable "name" {\n  type = string\n}\n\n'
        'variable "secret" {\n  type      = string\n  sensitive = true\n}\n\n'
        'output "label" {\n  value = "box-${var.name}"\n}\n\n'
        'output "token" {\n  value     = var.secret\n  sensitive = true\n}\n',
    )
    cli.write(
        "team.train.hcl",
        'module "team" {\n  source = "./mod"\n  name   = "a"\n  secret = var.token\n}\n',
    )
    result = ok(console(cli, "module.team.label", "module.team.token", "module.team"))
    assert result.out == '"box-a"\n(sensitive value)\n(sensitive value)\n'
    assert SECRET not in result.all
