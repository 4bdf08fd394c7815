"""SSH compute through the real CLI against real OpenSSH servers on 127.0.0.1 (fixtures in
conftest.py), logging in as the unprivileged user tfuser, as a new user would drive it:
attach by key with a pinned fingerprint, runs that stream their logs and bring outputs back,
incremental uploads, host key refusals (unknown and changed keys), password and
passphrase credentials that never reach a file or the terminal, the server killed mid-run,
`runs cancel`, a proxy jump and a multi-node rendezvous over TCP.

Every host is this machine: a run's files live under tfuser's home (`remote_tmp`), so tests
can look at the "remote" side directly (processes with `ps`, files with `pathlib`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import failed, ok, recorded, wait_until

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI, Result
    from tests.integration.conftest import SSHServer, TestUser, UserKey

ENVIRONMENT = """\
environment "system" {
  python       = "python3"
  user_managed = true
}
"""

# Arguments that a shell would mangle if any command on the way were built by pasting.
AWKWARD_ARGS = ["two words", 'it\'s "quoted"', "$HOME and $(id)", "a;b && c | d", "line1\nline2"]


# -- helpers ---------------------------------------------------------------------------------


def hcl(value: Any) -> str:
    """A value as an HCL literal (JSON strings and lists are valid HCL)."""
    return json.dumps(value)


def compute_block(
    server: SSHServer,
    workdir: str,
    *,
    name: str = "box",
    key: UserKey | None = None,
    pin: bool = True,
    **attributes: Any,
) -> str:
    """A `compute "<name>" { type = "ssh" }` block for `server` as tfuser. `attributes` are
    added as they are (strings that start with `var.` stay references)."""
    lines = [
        f'compute "{name}" {{',
        '  type     = "ssh"',
        f"  username = {hcl('tfuser')}",
        f"  workdir  = {hcl(workdir)}",
    ]
    if "hosts" not in attributes:
        lines += [f"  address = {hcl(server.address)}", f"  port = {server.port}"]
    if key is not None:
        lines.append(f"  private_key_file = {hcl(str(key.private_path))}")
    if pin:
        lines.append(f"  host_key = {hcl(server.fingerprint)}")
    for attr, value in attributes.items():
        if isinstance(value, str) and value.startswith("var."):
            lines.append(f"  {attr} = {value}")
        else:
            lines.append(f"  {attr} = {hcl(value)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_block(
    name: str = "train",
    script: str = "train.py",
    environment: str = "environment.system",
    **attributes: Any,
) -> str:
    lines = [
        f'run "{name}" {{',
        '  experiment  = "ssh-tests"',
        "  compute     = compute.box",
        f"  environment = {environment}",
        '  source_dir  = "src"',
        f"  script      = {hcl(script)}",
        '  max_duration = "2m"',
        '  grace_period = "3s"',
    ]
    lines += [f"  {attr} = {hcl(value)}" for attr, value in attributes.items()]
    lines.append("}")
    return "\n".join(lines) + "\n"


def state(cli: CLI) -> dict[str, dict[str, Any]]:
    """The state's resources by address (`show --json`, Terraform's state representation)."""
    data = json.loads(ok(cli("show", "--json")).out)
    return {r["address"]: r for r in data["values"]["root_module"]["resources"]}


def run_show(cli: CLI, ref: str = "run.train") -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", ref, "--json")).out))


def runs_list(cli: CLI) -> list[dict[str, Any]]:
    return list(json.loads(ok(cli("runs", "list", "--json")).out))


def upload_of(cli: CLI, ref: str = "run.train") -> dict[str, int]:
    """What the latest run of `ref` sent to the host, as the provider recorded it."""
    return dict(recorded(cli.cwd)[ref].computed["handle"]["upload"])


def assert_no_auth_attempt(log: str) -> None:
    # sshd logs every authentication request at DEBUG1 ("userauth-request ... method ...").
    for sign in ("userauth-request", "Accepted", "Failed password", "Failed publickey"):
        assert sign not in log, f"{sign!r} in the server log:\n{log}"


def tfuser_processes(marker: str) -> list[str]:
    """`ps -u tfuser -o pid,args` lines (full width) that mention `marker`."""
    out = subprocess.run(
        ["ps", "-ww", "-u", "tfuser", "-o", "pid,args"], capture_output=True, text=True, check=False
    ).stdout
    return [line for line in out.splitlines()[1:] if marker in line]


@pytest.fixture(autouse=True)
def reap_runs(remote_tmp: str, tfuser: TestUser) -> Iterator[None]:
    """After each test, SIGKILL tfuser's processes that started in or name the test's folder
    (a failing test must not leave a run sleeping on the host)."""
    yield
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != tfuser.uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if remote_tmp in cmdline or cwd.startswith(remote_tmp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


class Background:
    """A `trainform` command running in the background, its output read line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(proc.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any, is_out: bool) -> None:
        for line in stream:
            if is_out:
                self.lines.append(line)
                self._queue.put(line)
            else:
                self._err.append(line)

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{text!r} not printed within {timeout:g} s:\n{self.output}")
            try:
                line = self._queue.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    time.sleep(0.2)  # let the pumps finish
                    if self._queue.empty():
                        pytest.fail(f"exited before printing {text!r}:\n{self.output}")
                continue
            if text in line:
                return line

    def finish(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines) + "".join(self._err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def background() -> Any:
    """Starts `Background` commands; any still running at the end are killed."""
    started: list[Background] = []

    def start(proc: subprocess.Popen[str]) -> Background:
        bg = Background(proc)
        started.append(bg)
        return bg

    yield start
    for bg in started:
        bg.kill()


# -- scripts ---------------------------------------------------------------------------------

# Prints lines, logs metrics, waits (if told) until the test lets it go, and writes who it ran
# as and the arguments it got into the outputs folder.
TRAIN = """\
import getpass, json, os, sys, time
from trainform.tracking import log_metric

for step in range(3):
    print(f"step {step} of training", flush=True)
    log_metric("loss", 1.0 / (step + 1), step=step)
gate = os.environ.get("GATE")
if gate:
    print("waiting for the gate", flush=True)
    deadline = time.time() + 60
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.05)
out = os.environ["TRAINFORM_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "who.json"), "w") as fh:
    json.dump({"uid": os.getuid(), "user": getpass.getuser(), "argv": sys.argv[1:]}, fh)
print("training done", flush=True)
"""


# -- 1. attach by key with a pinned fingerprint ------------------------------------------------


def test_attach_by_key_with_a_pinned_fingerprint(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, tfuser: TestUser
) -> None:
    workdir = f"{remote_tmp}/tf"
    cli.write("main.train.hcl", compute_block(sshd, workdir, key=user_key))
    since = sshd.log_size()
    result = ok(cli("apply", "--auto-approve"))
    assert "compute.box: Attached" in result.out, result.out
    assert "Accepted publickey for tfuser from 127.0.0.1 port" in sshd.log(since)

    box = state(cli)["compute.box"]["values"]
    facts = box["facts"]["127.0.0.1"]
    assert facts["user"] == "tfuser"
    assert facts["home"] == str(tfuser.home)
    assert isinstance(facts["cpus"], int) and facts["cpus"] >= 1
    assert facts["python_version"].startswith("3.")
    assert facts["os"] == "linux"
    assert box["host_keys"] == {"127.0.0.1": sshd.fingerprint}
    assert box["workdir_path"] == workdir
    assert Path(workdir).is_dir() and Path(workdir).stat().st_uid == tfuser.uid

    shown = ok(cli("show")).out
    assert "python_version" in shown and '"tfuser"' in shown, shown

    # The refresh reconnects (pinned) and finds nothing changed.
    since = sshd.log_size()
    ok(cli("plan", "--detailed-exitcode"), 0)
    assert "Accepted publickey for tfuser" in sshd.log(since)


# -- 2. a run: live logs, the user it runs as, outputs, arguments ------------------------------


def test_run_streams_logs_runs_as_tfuser_and_brings_outputs_back(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    background: Callable[..., Background],
    tmp_path: Path,
) -> None:
    gate = Path(remote_tmp) / "gate"
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + ENVIRONMENT
        + run_block(arguments=AWKWARD_ARGS, env={"GATE": str(gate)}),
    )
    cli.write("src/train.py", TRAIN)
    cli.write("src/helper.py", "VALUE = 1\n")
    cli.write("src/data/labels.txt", "cat\ndog\n")

    apply = background(cli.popen("apply", "--auto-approve"))
    # The log reaches the terminal while the run is still going (it waits for the gate).
    apply.wait_for_line("step 2 of training")
    apply.wait_for_line("waiting for the gate")
    assert not any("Completed" in line for line in apply.lines), apply.output
    gate.touch()
    assert apply.finish() == 0, apply.output
    assert "training done" in apply.output
    assert "run.train: Completed" in apply.output

    run = run_show(cli)
    assert run["status"] == "completed" and run["exit_code"] == 0, run
    assert run["metrics"]["loss"]["count"] == 3, run["metrics"]

    dest = tmp_path / "fetched"
    ok(cli("runs", "outputs", "run.train", "--to", str(dest)))
    who = json.loads((dest / "who.json").read_text())
    assert who["uid"] == tfuser.uid and who["user"] == "tfuser", who
    assert who["argv"] == AWKWARD_ARGS

    # Three distinct files, all new to the host's cache.
    upload = upload_of(cli)
    assert upload["files"] == 3, upload
    assert upload["bytes"] >= len(TRAIN), upload


def test_runs_show_reports_the_upload(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key) + ENVIRONMENT + run_block(),
    )
    cli.write("src/train.py", 'print("hello")\n')
    out = ok(cli("apply", "--auto-approve")).out
    assert "uploading" not in out, out  # a small upload says nothing
    run = run_show(cli)
    assert run.get("upload", {}).get("files") == 1, run
    assert run["upload"]["bytes"] > 0, run

    # A large one reports its progress while it goes, up to 100%, once.
    (cli.cwd / "src" / "weights.bin").write_bytes(os.urandom(24 << 20))
    out = ok(cli("apply", "--auto-approve")).out
    assert "run.train: uploading 1 file(s):" in out, out
    assert out.count("of 24.0 MiB (100%)") == 1, out
    assert run_show(cli)["upload"]["files"] == 1


# -- 3. a rerun sends only what changed ----------------------------------------------------------


def test_rerun_with_one_file_changed_sends_only_that_file(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key) + ENVIRONMENT + run_block(),
    )
    cli.write("src/train.py", "import helper\nprint('value', helper.VALUE)\n")
    cli.write("src/helper.py", "VALUE = 1\n")
    for i in range(8):
        cli.write(f"src/data/part{i}.txt", f"part {i}\n" * 2000)
    first = ok(cli("apply", "--auto-approve"))
    assert "value 1" in first.out
    assert upload_of(cli)["files"] == 10

    cli.write("src/helper.py", "VALUE = 2\n")
    second = ok(cli("apply", "--auto-approve"))
    assert "value 2" in second.out, second.out
    upload = upload_of(cli)
    assert upload["files"] == 1, upload
    # One small file travels, not the 8 parts of ~14 kB each (plus the tar stream's framing).
    assert upload["bytes"] < 8 * 14_000 / 2, upload
    assert len(runs_list(cli)) == 2

    # Nothing changed: nothing to run and nothing to send.
    ok(cli("plan", "--detailed-exitcode"), 0)


# -- 4. unknown and changed host keys -----------------------------------------------------------


def test_unknown_host_key_is_refused_then_trusted_once_then_a_changed_key_is_refused(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"  # empty: the server is unknown
    known_hosts.write_text("")
    workdir = f"{remote_tmp}/tf"

    def config(**extra: Any) -> str:
        return (
            compute_block(
                sshd, workdir, key=user_key, pin=False, known_hosts=str(known_hosts), **extra
            )
            + ENVIRONMENT
            + run_block()
        )

    cli.write("main.train.hcl", config())
    cli.write("src/train.py", 'print("ran on the host")\n')
    since = sshd.log_size()
    result = failed(
        cli("apply", "--auto-approve"),
        sshd.fingerprint,
        f'host_key = "{sshd.fingerprint}"',
        "trust_on_first_use",
    )
    assert "ran on the host" not in result.out
    assert_no_auth_attempt(sshd.wait_for_log("do_cleanup", since=since))
    assert not Path(workdir).exists()

    # Trust on first use: the key seen is recorded in state and pinned from then on.
    cli.write("main.train.hcl", config(trust_on_first_use=True))
    result = ok(cli("apply", "--auto-approve"))
    assert "ran on the host" in result.out
    assert state(cli)["compute.box"]["values"]["host_keys"] == {"127.0.0.1": sshd.fingerprint}
    assert known_hosts.read_text() == ""  # recorded in state, not in the user's files
    ok(cli("plan", "--detailed-exitcode"), 0)

    # The server now presents another key: refused, with a man-in-the-middle warning and
    # without sending credentials; nothing runs.
    old = sshd.fingerprint
    sshd.restart(new_host_key=True)
    assert sshd.fingerprint != old
    cli.write("src/train.py", 'print("ran on the host again")\n')  # would resubmit
    since = sshd.log_size()
    plan = cli("plan", "-detailed-exitcode")
    assert plan.code == 1, plan.all  # an error, never "no changes" or "changes to review"
    assert "cannot read compute.box: WARNING: the host key" in plan.all, plan.all
    assert "man-in-the-middle" in plan.all, plan.all
    assert sshd.fingerprint in plan.all and old in plan.all, plan.all
    refresh = cli("refresh")
    assert refresh.code == 1 and "man-in-the-middle" in refresh.all, refresh.all

    result = cli("apply", "--auto-approve")
    assert result.code == 1, result.all
    assert "man-in-the-middle" in result.all, result.all
    assert "ran on the host again" not in result.all
    assert len(runs_list(cli)) == 1
    assert len(list((Path(workdir) / "runs").iterdir())) == 1
    # Every connection of plan and apply stopped after the key exchange.
    log = sshd.log(since)
    assert log.count("Connection from 127.0.0.1") >= 2, log
    assert_no_auth_attempt(log)
    # The recorded pin is unchanged: the new key was not learnt.
    assert state(cli)["compute.box"]["values"]["host_keys"] == {"127.0.0.1": old}


# -- 5-7. passwords and passphrases --------------------------------------------------------------


def sensitive_variable(name: str) -> str:
    return f'variable "{name}" {{\n  type      = string\n  sensitive = true\n}}\n'


def files_containing(root: Path, secret: str) -> list[str]:
    """Files under root (any depth, dot folders and SQLite WAL files included) that hold the
    secret's bytes, plain or as UTF-16 (how some tools would store text)."""
    needles = [secret.encode(), secret.encode("utf-16-le")]
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found


def test_password_auth_keeps_the_password_out_of_files_and_output(
    cli: CLI, sshd: SSHServer, remote_tmp: str, tfuser: TestUser, tmp_path: Path
) -> None:
    workdir = f"{remote_tmp}/tf"
    cli.write(
        "main.train.hcl",
        sensitive_variable("pw")
        + compute_block(sshd, workdir, password="var.pw")
        + ENVIRONMENT
        + run_block(),
    )
    cli.write("src/train.py", 'import getpass\nprint("ran as", getpass.getuser())\n')
    secret = {"TRAINFORM_VAR_pw": tfuser.password}
    outputs: list[Result] = []

    plan_file = tmp_path / "saved.plan"
    outputs.append(ok(cli("plan", "--out", str(plan_file), **secret)))
    since = sshd.log_size()
    outputs.append(ok(cli("apply", "--auto-approve", str(plan_file), **secret)))
    assert "ran as tfuser" in outputs[-1].out
    assert "Accepted password for tfuser" in sshd.log(since)
    assert run_show(cli)["status"] == "completed"

    # A later command reconnects with the password from the configuration (state has a hash).
    outputs.append(ok(cli("plan", "--detailed-exitcode", **secret), 0))
    outputs.append(ok(cli("show", **secret)))
    outputs.append(ok(cli("show", "--json", **secret)))
    outputs.append(ok(cli("runs", "show", "run.train", "--json")))
    outputs.append(ok(cli("runs", "logs", "run.train")))
    outputs.append(ok(cli("plan", "--out", str(plan_file), **secret)))
    # State has a salted hash that notices a change of password, never the password.
    shown = json.loads(outputs[4].out)["values"]["root_module"]["resources"]
    box = next(r for r in shown if r["address"] == "compute.box")
    assert box["sensitive_values"]["password"] is True and box["values"]["password"] is None
    assert files_containing(cli.cwd, tfuser.password) == []  # state, WAL, plan, artifacts
    assert files_containing(plan_file.parent, tfuser.password) == []

    # A detached run: new processes (`runs show`, `runs cancel`, then destroy) reach the host
    # with the password from the configuration (the run's record has none).
    marker = f"pw-marker-{Path(remote_tmp).name}"
    cli.write(
        "main.train.hcl",
        cli.cwd.joinpath("main.train.hcl")
        .read_text()
        .replace('run "train" {', f'run "train" {{\n  arguments = {hcl([marker])}'),
    )
    cli.write("src/train.py", SLEEPER)
    outputs.append(ok(cli("apply", "--auto-approve", "--detach", **secret)))
    wait_until("the detached run to start", lambda: len(tfuser_processes(marker)) >= 2)
    outputs.append(ok(cli("runs", "show", "run.train", "--json", **secret)))
    assert json.loads(outputs[-1].out)["status"] == "running", outputs[-1].out
    outputs.append(ok(cli("runs", "cancel", "run.train", **secret)))
    wait_until("the run's processes to end", lambda: not tfuser_processes(marker))
    outputs.append(ok(cli("destroy", "--auto-approve", **secret)))

    for result in outputs:
        assert tfuser.password not in result.all, result.all
    assert files_containing(cli.cwd, tfuser.password) == []
    assert files_containing(plan_file.parent, tfuser.password) == []
    assert files_containing(Path(workdir), tfuser.password) == []  # the host's side too


def test_a_wrong_password_is_a_clear_authentication_error(
    cli: CLI, sshd: SSHServer, remote_tmp: str
) -> None:
    wrong = "not-the-password-9f3a"
    cli.write(
        "main.train.hcl",
        sensitive_variable("pw") + compute_block(sshd, f"{remote_tmp}/tf", password="var.pw"),
    )
    since = sshd.log_size()
    result = failed(
        cli("apply", "--auto-approve", TRAINFORM_VAR_pw=wrong),
        f"authentication as tfuser@127.0.0.1:{sshd.port} failed",
        "password",
    )
    assert wrong not in result.all
    assert files_containing(cli.cwd, wrong) == []
    assert "Failed password for tfuser" in sshd.log(since)
    # One attempt per connection, not a retry loop that would trip fail2ban and the like.
    assert sshd.log(since).count("Failed password for tfuser") == 1


def test_passphrase_protected_key(
    cli: CLI,
    sshd: SSHServer,
    user_key_passphrase: UserKey,
    remote_tmp: str,
    tmp_path: Path,
) -> None:
    assert user_key_passphrase.passphrase
    config = (
        sensitive_variable("pp")
        + compute_block(
            sshd,
            f"{remote_tmp}/tf",
            key=user_key_passphrase,
            private_key_passphrase="var.pp",
        )
        + ENVIRONMENT
        + run_block()
    )
    cli.write("main.train.hcl", config)
    cli.write("src/train.py", 'print("unlocked")\n')
    since = sshd.log_size()
    result = ok(cli("apply", "--auto-approve", TRAINFORM_VAR_pp=user_key_passphrase.passphrase))
    assert "unlocked" in result.out
    assert "Accepted publickey for tfuser" in sshd.log(since)
    assert user_key_passphrase.passphrase not in result.all
    assert files_containing(cli.cwd, user_key_passphrase.passphrase) == []

    # Another folder, the same key with a wrong passphrase: refused without showing it.
    other = tmp_path / "other"
    other.mkdir()
    wrong_cli = type(cli)(other, cli.env)
    wrong_cli.write("main.train.hcl", config.replace(f"{remote_tmp}/tf", f"{remote_tmp}/tf2"))
    wrong_cli.write("src/train.py", 'print("unlocked")\n')
    wrong = "incorrect staple"
    result = failed(
        wrong_cli("apply", "--auto-approve", TRAINFORM_VAR_pp=wrong),
        f"tfuser@127.0.0.1:{sshd.port}",
        "wrong private_key_passphrase",
    )
    assert wrong not in result.all
    assert "unlocked" not in result.out
    assert files_containing(other, wrong) == []


# -- 8. the server killed mid-run ----------------------------------------------------------------

TICKS = """\
import time
for i in range(7):
    print(f"tick {i}", flush=True)
    time.sleep(1)
print("all ticks done", flush=True)
"""


def test_apply_recovers_when_the_server_is_killed_mid_run(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    background: Callable[..., Background],
) -> None:
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key) + ENVIRONMENT + run_block(),
    )
    cli.write("src/train.py", TICKS)
    apply = background(cli.popen("apply", "--auto-approve"))
    apply.wait_for_line("tick 1")
    sshd.kill()  # every session drops at once; the detached launcher keeps going
    time.sleep(2)
    sshd.restart()  # same host key
    assert apply.finish(timeout=120) == 0, apply.output
    out = apply.output
    assert "run.train: Completed" in out, out
    # The log was followed on from where it was: every line once, in order.
    ticks = [line.split("| ", 1)[-1].strip() for line in apply.lines if "tick " in line]
    assert ticks == [f"tick {i}" for i in range(7)], out
    assert "all ticks done" in out
    run = run_show(cli)
    assert run["status"] == "completed" and run["exit_code"] == 0, run
    assert "all ticks done" in ok(cli("runs", "logs", "run.train")).out


# -- 9. runs cancel ------------------------------------------------------------------------------

SLEEPER = """\
import subprocess, sys, time
# A child too: cancel must stop the run's whole process group, not just the script.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(90)", sys.argv[1] + "-child"])
print("sleeping", flush=True)
time.sleep(90)
"""


def test_runs_cancel_stops_every_process_of_the_run_on_the_host(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    marker = f"marker-{Path(remote_tmp).name}"
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + ENVIRONMENT
        + run_block(arguments=[marker]),
    )
    cli.write("src/train.py", SLEEPER)
    ok(cli("apply", "--auto-approve", "--detach"))
    run_id = run_show(cli)["id"]
    wait_until(
        "the run to start on the host",
        lambda: run_show(cli)["status"] == "running" and len(tfuser_processes(marker)) >= 2,
    )
    assert tfuser_processes(run_id), "the launcher is not running as tfuser"

    ok(cli("runs", "cancel", "run.train"))
    wait_until("the run's processes to end", lambda: not tfuser_processes(marker), timeout=20)
    assert not tfuser_processes(run_id)  # the launcher too
    run = wait_until(
        "the run to be recorded as canceled",
        lambda: (r := run_show(cli))["status"] == "canceled" and r,
    )
    assert "sleeping" in ok(cli("runs", "logs", "run.train")).out, run


# -- 10. a proxy jump ----------------------------------------------------------------------------


def test_attach_and_run_through_a_proxy_jump(
    cli: CLI,
    sshd_factory: Callable[..., SSHServer],
    user_key: UserKey,
    remote_tmp: str,
    tmp_path: Path,
) -> None:
    bastion, inner = sshd_factory(), sshd_factory()
    known_hosts = tmp_path / "known_hosts"  # the bastion is known the usual way
    known_hosts.write_text(bastion.known_hosts_line + "\n")
    cli.write(
        "main.train.hcl",
        compute_block(
            inner,
            f"{remote_tmp}/tf",
            key=user_key,
            proxy_jump=f"tfuser@127.0.0.1:{bastion.port}",
            known_hosts=str(known_hosts),
        )
        + ENVIRONMENT
        + run_block(),
    )
    cli.write("src/train.py", 'print("hello from behind the bastion")\n')
    since_bastion = bastion.log_size()
    result = ok(cli("apply", "--auto-approve"))
    assert "hello from behind the bastion" in result.out
    log = bastion.log(since_bastion)
    assert "ctype direct-tcpip" in log, log
    assert f"target 127.0.0.1 port {inner.port}" in log, log
    assert "Accepted publickey for tfuser" in log

    # Both hops' keys are recorded, so both are pinned from now on.
    keys = state(cli)["compute.box"]["values"]["host_keys"]
    assert keys == {"127.0.0.1": inner.fingerprint, bastion.endpoint: bastion.fingerprint}

    # The bastion's key changes: refused there, before anything reaches the inner host.
    known_hosts.write_text("")  # the pin in state is what protects the user now
    bastion.restart(new_host_key=True)
    since_inner, since_bastion = inner.log_size(), bastion.log_size()
    plan = cli("plan")
    assert plan.code == 1 and "man-in-the-middle" in plan.all, plan.all
    assert bastion.fingerprint in plan.all
    assert_no_auth_attempt(bastion.log(since_bastion))
    assert "Connection from" not in inner.log(since_inner)


# -- 11. a multi-node run on a pool --------------------------------------------------------------

RENDEZVOUS = """\
import json, os, socket, time

NAMES = ("TRAINFORM_NODE_RANK", "TRAINFORM_NUM_NODES", "TRAINFORM_NODE_IPS", "MASTER_ADDR",
         "MASTER_PORT", "WORLD_SIZE", "NODE_RANK")
env = {k: os.environ.get(k) for k in NAMES}
rank = int(os.environ["TRAINFORM_NODE_RANK"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
if rank == 0:
    server = socket.create_server((addr, port))
    server.settimeout(60)
    conn, _ = server.accept()
    got = conn.recv(100).decode()
    conn.sendall(b"hello from rank 0")
else:
    deadline = time.time() + 60
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    conn.sendall(b"hello from rank %d" % rank)
    got = conn.recv(100).decode()
conn.close()
print(f"rank {rank} got: {got}", flush=True)
out = os.environ["TRAINFORM_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "rendezvous.json"), "w") as fh:
    json.dump({"rank": rank, "got": got, "env": env, "pid": os.getpid()}, fh)
"""


def pool_block(a: SSHServer, b: SSHServer, workdir: str, key: UserKey, tmp_path: Path) -> str:
    """A compute block for a pool of two servers. Both are this machine, on different ports
    (entries are "host:port"), so each node takes one of its two run slots."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(a.known_hosts_line + "\n" + b.known_hosts_line + "\n")
    return compute_block(
        a,
        workdir,
        key=key,
        pin=False,
        hosts=[a.endpoint, b.endpoint],
        known_hosts=str(known_hosts),
        max_concurrent_runs=2,
    )


def test_multi_node_run_on_a_pool_rendezvous_over_tcp(
    cli: CLI,
    sshd_factory: Callable[..., SSHServer],
    user_key: UserKey,
    remote_tmp: str,
    tmp_path: Path,
) -> None:
    a, b = sshd_factory(), sshd_factory()
    cli.write(
        "main.train.hcl",
        pool_block(a, b, f"{remote_tmp}/tf", user_key, tmp_path)
        + ENVIRONMENT
        + run_block(node_count=2),
    )
    cli.write("src/train.py", RENDEZVOUS)
    since_a, since_b = a.log_size(), b.log_size()
    result = ok(cli("apply", "--auto-approve"))
    assert "rank 0 got: hello from rank 1" in result.out, result.out
    assert "Accepted publickey for tfuser" in a.log(since_a)
    assert "Accepted publickey for tfuser" in b.log(since_b)

    box = state(cli)["compute.box"]["values"]
    assert set(box["facts"]) == {a.endpoint, b.endpoint}
    assert box["host_keys"] == {a.endpoint: a.fingerprint, b.endpoint: b.fingerprint}

    run = run_show(cli)
    assert run["status"] == "completed" and run["exit_code"] == 0, run
    collected = Path(run["outputs_path"]).parent
    nodes = [
        json.loads((collected / "outputs" / "rendezvous.json").read_text()),
        json.loads((collected / "nodes" / "1" / "outputs" / "rendezvous.json").read_text()),
    ]
    assert [n["got"] for n in nodes] == ["hello from rank 1", "hello from rank 0"]
    assert nodes[0]["pid"] != nodes[1]["pid"]
    for rank, node in enumerate(nodes):
        env = node["env"]
        assert node["rank"] == rank
        assert env["TRAINFORM_NODE_RANK"] == env["NODE_RANK"] == str(rank)
        assert env["TRAINFORM_NUM_NODES"] == env["WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == "127.0.0.1"
        assert env["TRAINFORM_NODE_IPS"] == "127.0.0.1,127.0.0.1"
        assert env["MASTER_PORT"] == nodes[0]["env"]["MASTER_PORT"]
    # The second node's log was collected as well.
    assert "rank 1 got: hello from rank 0" in (collected / "nodes" / "1" / "output.log").read_text()


# -- lifecycle: update in place, unreachable drift, detach ---------------------------------------


def test_update_in_place_unreachable_drift_and_detach(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, tfuser: TestUser
) -> None:
    workdir = Path(remote_tmp) / "tf"
    relative = str(workdir.relative_to(tfuser.home))  # a workdir relative to the home folder

    def config(**extra: Any) -> str:
        return compute_block(sshd, relative, key=user_key, **extra)

    cli.write("main.train.hcl", config(tags={"team": "vision"}))
    ok(cli("apply", "--auto-approve"))
    assert state(cli)["compute.box"]["values"]["workdir_path"] == str(workdir)
    (workdir / "keep.txt").write_text("made on the host\n")

    cli.write("main.train.hcl", config(tags={"team": "speech"}, max_concurrent_runs=2))
    plan = ok(cli("plan", "--detailed-exitcode"), 2)
    assert "1 to change" in plan.out and "0 to destroy" in plan.out, plan.out
    ok(cli("apply", "--auto-approve"))
    assert state(cli)["compute.box"]["values"]["tags"] == {"team": "speech"}

    # The host goes away: as in Terraform, the plan fails naming the resource and the cause,
    # and says how to plan without reading it; it never plans a re-attach.
    sshd.kill()
    plan = failed(cli("plan", "-detailed-exitcode"), "cannot read compute.box", "-refresh=false")
    assert "connection refused" in plan.all, plan.all
    assert "will be attached" not in plan.all, plan.all
    ok(cli("plan", "-refresh=false", "-detailed-exitcode"), 0)
    # -target reads only the targets and what they need: the dead host is left out.
    cli.write("other.train.hcl", 'compute "other" {\n  type = "local"\n}\n')
    plan = ok(cli("plan", "-target=compute.other", "-detailed-exitcode"), 2)
    assert "compute.other will be attached" in plan.out and "compute.box" not in plan.all
    (cli.cwd / "other.train.hcl").unlink()
    sshd.restart()
    ok(cli("plan", "--detailed-exitcode"), 0)

    # Detaching removes nothing on the host...
    ok(cli("destroy", "--auto-approve"))
    assert (workdir / "keep.txt").is_file()
    # ...unless cleanup = true.
    cli.write("main.train.hcl", config(cleanup=True))
    ok(cli("apply", "--auto-approve"))
    ok(cli("destroy", "--auto-approve"))
    assert not workdir.exists()
    assert Path(remote_tmp).is_dir()


def test_a_sensitive_environment_variable_reaches_the_script_but_no_local_file(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    token = "tok-5b1e0c77d2"
    cli.write(
        "main.train.hcl",
        sensitive_variable("token")
        + compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + 'environment "system" {\n  python = "python3"\n  user_managed = true\n'
        + "  variables = { TRACKING_TOKEN = var.token }\n}\n"
        + run_block(),
    )
    cli.write(
        "src/train.py",
        "import hashlib, os\n"
        "print('token sha256', hashlib.sha256(os.environ['TRACKING_TOKEN'].encode()).hexdigest())\n",
    )
    result = ok(cli("apply", "--auto-approve", TRAINFORM_VAR_token=token))
    assert hashlib.sha256(token.encode()).hexdigest() in result.out
    assert token not in result.all
    assert files_containing(cli.cwd, token) == []
    # The host needs it to start the run: there, only tfuser may read the run's folder.
    runs = Path(remote_tmp) / "tf" / "runs"
    assert runs.stat().st_mode & 0o077 == 0, oct(runs.stat().st_mode)
    # Not for longer than the launcher needs it: it read and deleted the run's secret file.
    assert files_containing(runs, token) == []
    collected = json.loads((Path(run_show(cli)["outputs_path"]).parent / "spec.json").read_text())
    assert collected["environment"]["variables"] == {}
    assert collected["secrets"] == {"env": [], "variables": ["TRACKING_TOKEN"]}
