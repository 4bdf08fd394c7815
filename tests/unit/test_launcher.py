"""The launcher, run the way targets run it: ``python3 launcher.py RUN_DIR`` in a real process,
over a real blob store, with real child processes, signals and virtualenvs."""

from __future__ import annotations

import ast
import base64
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

import trainform
from trainform.runs import launcher
from trainform.runs.launcher import LauncherError, materialise, read_status, resolve_python

LAUNCHER = Path(launcher.__file__)
PACKAGE = Path(trainform.__file__).parent


# --- helpers --------------------------------------------------------------------------------


def store_tree(
    blob_dir: Path,
    files: dict[str, str | bytes],
    links: dict[str, str] | None = None,
    executable: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Put ``files`` into a content-addressed blob store; return their manifest."""
    entries: list[dict[str, Any]] = []
    for path, content in sorted(files.items()):
        data = content.encode() if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()
        blob = blob_dir / digest[:2] / digest[2:]
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        mode = 0o755 if path in executable else 0o644
        entries.append(
            {"path": path, "kind": "file", "sha256": digest, "size": len(data), "mode": mode}
        )
    for path, target in sorted((links or {}).items()):
        entries.append({"path": path, "kind": "link", "target": target})
    return {"entries": entries}


def make_lib(folder: Path) -> Path:
    """The lib folder a provider ships: trainform/__init__.py and trainform/tracking.py."""
    (folder / "trainform").mkdir(parents=True)
    shutil.copy(PACKAGE / "__init__.py", folder / "trainform" / "__init__.py")
    shutil.copy(PACKAGE / "tracking.py", folder / "trainform" / "tracking.py")
    return folder


def launcher_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFORM_", "PIP_"))}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


class Run:
    """One run folder with its spec, and the launcher started on it."""

    def __init__(self, root: Path, files: dict[str, str | bytes], **spec: Any) -> None:
        self.root = root
        self.dir = root / "runs" / str(spec.get("run_id", "run-1"))
        self.dir.mkdir(parents=True)
        blob_dir = root / "blobs"
        lib = root / "lib"
        if not lib.exists():
            make_lib(lib)
        manifest = store_tree(blob_dir, files, spec.pop("links", None), spec.pop("executable", ()))
        self.spec: dict[str, Any] = {
            "run_id": "run-1",
            "address": "run.test",
            "experiment": "exp-a",
            "manifest": manifest,
            "blob_dir": str(blob_dir),
            "script": "train.py",
            "command": None,
            "arguments": [],
            "env": {},
            "environment": {
                "python": sys.executable,
                "user_managed": True,
                "requirements": [],
                "hash": "0" * 32,
                "cache_dir": str(root / "envs"),
                "variables": {},
            },
            "max_duration": None,
            "grace_seconds": 2.0,
            "metrics": {},
            "outputs_dir": "outputs",
            "lib_dir": str(lib),
        }
        self.spec.update(spec)
        (self.dir / "spec.json").write_text(json.dumps(self.spec))

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(self.dir)],
            env=launcher_env(**(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, timeout: float = 120, env: dict[str, str] | None = None) -> int:
        proc = self.start(env)
        out, _ = proc.communicate(timeout=timeout)
        assert out == "", out  # the launcher writes to files, never to its own stdout
        return proc.returncode

    @property
    def status(self) -> dict[str, Any]:
        return read_status(self.dir)

    @property
    def output(self) -> str:
        path = self.dir / "output.log"
        return path.read_text() if path.exists() else ""

    @property
    def outputs(self) -> Path:
        return self.dir / "src" / "outputs"

    def metrics(self) -> list[dict[str, Any]]:
        path = self.dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def wait_for(self, predicate: Any, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"timed out; status {self.status}; output:\n{self.output}")
            time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def script(body: str) -> str:
    return textwrap.dedent(body).lstrip()


# A script that starts a grandchild (in its own process group), reports both pids, and sleeps.
SLEEPER = script(
    """
    import json, os, signal, subprocess, sys, time
    out = os.environ["TRAINFORM_OUTPUT_DIR"]
    mode = sys.argv[1] if len(sys.argv) > 1 else "default"
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif mode == "graceful":
        def on_term(signum, frame):
            open(os.path.join(out, "got-term"), "w").close()
            print("shutting down cleanly", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(os.path.join(out, "pids.json.tmp"), "w") as f:
        json.dump({"pid": os.getpid(), "grandchild": grandchild.pid}, f)
    os.rename(os.path.join(out, "pids.json.tmp"), os.path.join(out, "pids.json"))
    print("ready", flush=True)
    time.sleep(300)
    """
)


def make_wheel(folder: Path, name: str = "tfprobe", version: str = "0.1") -> Path:
    """A minimal pure-Python wheel with a module and a console script, built by hand."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": (
            f"VERSION = {version!r}\n"
            "def main():\n"
            "    import sys\n"
            "    print('tfprobe', VERSION, sys.prefix, *sys.argv[1:])\n"
        ),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: trainform-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
        f"{dist}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


# --- running scripts --------------------------------------------------------------------------


ECHO_ARGV = script(
    """
    import json, os, sys
    import trainform
    out = os.environ["TRAINFORM_OUTPUT_DIR"]
    names = ["TRAINFORM_RUN_ID", "TRAINFORM_EXPERIMENT", "TRAINFORM_OUTPUT_DIR",
             "TRAINFORM_METRICS_FILE", "TRAINFORM_NODE_RANK", "PYTHONPATH", "PYTHONUNBUFFERED",
             "FROM_ENV", "FROM_ENVIRONMENT", "SHARED"]
    with open(os.path.join(out, "seen.json"), "w") as f:
        json.dump({"argv": sys.argv, "cwd": os.getcwd(), "trainform": trainform.__file__,
                   "env": {n: os.environ.get(n) for n in names}}, f)
    print("hello from the run")
    """
)


def test_completed_run_gets_arguments_env_and_lib_intact(tmp_path: Path) -> None:
    arguments = [
        "--name",
        "two words",
        'it\'s "quoted"',
        "$HOME and ${PATH}",
        "a; rm -rf / && echo pwned | cat",
        "line one\nline two",
        "",
        "*",
    ]
    run = Run(
        tmp_path,
        {"train.py": ECHO_ARGV},
        arguments=arguments,
        env={"FROM_ENV": "run env", "SHARED": "run wins"},
        environment={
            "python": sys.executable,
            "user_managed": True,
            "requirements": [],
            "hash": "h",
            "cache_dir": str(tmp_path / "envs"),
            "variables": {"FROM_ENVIRONMENT": "environment", "SHARED": "environment"},
        },
        extra_env={"TRAINFORM_NODE_RANK": "0"},
    )
    assert run.run() == 0, run.output
    seen = json.loads((run.outputs / "seen.json").read_text())
    assert seen["argv"] == ["train.py", *arguments]
    assert seen["cwd"] == str(run.dir / "src")
    assert seen["env"] == {
        "TRAINFORM_RUN_ID": "run-1",
        "TRAINFORM_EXPERIMENT": "exp-a",
        "TRAINFORM_OUTPUT_DIR": str(run.outputs),
        "TRAINFORM_METRICS_FILE": str(run.dir / "metrics.jsonl"),
        "TRAINFORM_NODE_RANK": "0",
        "PYTHONPATH": str(tmp_path / "lib"),
        "PYTHONUNBUFFERED": "1",
        "FROM_ENV": "run env",
        "FROM_ENVIRONMENT": "environment",
        "SHARED": "run wins",
    }
    # The script imported trainform from the shipped lib, not from an install.
    assert seen["trainform"] == str(tmp_path / "lib" / "trainform" / "__init__.py")
    assert run.output == "hello from the run\n"
    status = run.status
    assert status["status"] == "completed"
    assert status["exit_code"] == 0
    assert status["environment"] == "as-is"
    assert status["python"] == sys.executable
    assert status["launcher_pid"] > 0 and status["child_pid"] > 0
    assert status["pgid"] == status["child_pid"]
    assert status["created"] <= status["started"] <= status["finished"]
    assert status["finished"].endswith("+00:00")


def test_command_runs_with_python_replaced_and_arguments_appended(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        {"pkg/__init__.py": "", "pkg/main.py": ECHO_ARGV},
        script=None,
        command=["python", "-m", "pkg.main", "--from-command"],
        arguments=["--from-arguments", "x y"],
    )
    assert run.run() == 0, run.output
    seen = json.loads((run.outputs / "seen.json").read_text())
    assert seen["argv"][1:] == ["--from-command", "--from-arguments", "x y"]


def test_tracking_and_regex_metrics_land_in_metrics_file(tmp_path: Path) -> None:
    train = script(
        """
        import sys
        from trainform.tracking import log_metric, log_param
        log_param("optimizer", "adam")
        for step in range(3):
            log_metric("accuracy", 0.5 + step / 10, step=step)
            print(f"epoch {step} loss={1.0 / (step + 1):.3f} lr=0.1")
        print("loss=nan (diverged?)")
        sys.stdout.write("final loss=0.125")  # no newline at the very end
        """
    )
    run = Run(
        tmp_path,
        {"train.py": train},
        metrics={"loss": r"loss=([0-9.]+|nan)", "lr": r"lr=([0-9.]+)"},
    )
    assert run.run() == 0, run.output
    records = run.metrics()
    params = [r for r in records if r["kind"] == "param"]
    assert [(p["name"], p["value"]) for p in params] == [("optimizer", "adam")]
    accuracy = [r for r in records if r.get("name") == "accuracy"]
    assert [(r["value"], r["step"]) for r in accuracy] == [(0.5, 0), (0.6, 1), (0.7, 2)]
    loss = [r for r in records if r.get("name") == "loss"]
    assert all(r["source"] == "log" and r["kind"] == "metric" for r in loss)
    assert [(r["value"], r["step"]) for r in loss] == [
        (1.0, 0),
        (0.5, 1),
        (0.333, 2),
        (None, 3),
        (0.125, 4),
    ]
    assert loss[3]["nonfinite"] == "nan"
    assert [r["step"] for r in records if r.get("name") == "lr"] == [0, 1, 2]
    assert "final loss=0.125" in run.output


def test_failing_script_is_failed_with_its_exit_code(tmp_path: Path) -> None:
    train = "import sys\nprint('about to fail', file=sys.stderr)\nsys.exit(3)\n"
    run = Run(tmp_path, {"train.py": train})
    assert run.run() == 1
    status = run.status
    assert status["status"] == "failed"
    assert status["exit_code"] == 3
    assert status["message"] == "exit code 3"
    assert "about to fail" in run.output
    assert "[trainform] run failed: exit code 3" in run.output


def test_script_killed_by_a_signal_is_failed_naming_it(tmp_path: Path) -> None:
    train = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    run = Run(tmp_path, {"train.py": train})
    assert run.run() == 1
    assert run.status["status"] == "failed"
    assert run.status["signal"] == "SIGKILL"
    assert run.status["message"] == "killed by signal SIGKILL"


def test_command_that_does_not_exist_fails_clearly(tmp_path: Path) -> None:
    run = Run(tmp_path, {"x.txt": "x"}, script=None, command=["no-such-program-xyz"])
    assert run.run() == 1
    assert run.status["status"] == "failed"
    assert "cannot start no-such-program-xyz" in run.status["message"]
    assert "cannot start no-such-program-xyz" in run.output


def test_status_goes_from_running_to_completed(tmp_path: Path) -> None:
    train = script(
        """
        import os, time
        go = os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "go")
        print("waiting", flush=True)
        while not os.path.exists(go):
            time.sleep(0.05)
        """
    )
    run = Run(tmp_path, {"train.py": train})
    proc = run.start()
    try:
        run.wait_for(lambda: run.status.get("status") == "running")
        status = run.status
        assert status["launcher_pid"] == proc.pid
        assert alive(status["child_pid"])
        assert status["finished"] is None and status["exit_code"] is None
        run.wait_for(lambda: "waiting" in run.output)  # output.log is written as it comes
        (run.outputs / "go").touch()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert run.status["status"] == "completed"
    assert not alive(status["child_pid"])


# --- time limit and cancellation ---------------------------------------------------------------


def test_time_limit_kills_the_whole_process_group(tmp_path: Path) -> None:
    run = Run(tmp_path, {"train.py": SLEEPER}, max_duration=1, grace_seconds=1)
    started = time.monotonic()
    assert run.run(timeout=60) == 1
    assert time.monotonic() - started < 15
    status = run.status
    assert status["status"] == "timed_out"
    assert status["message"] == "timed out after 1s"
    pids = json.loads((run.outputs / "pids.json").read_text())
    assert not alive(pids["pid"])
    assert not alive(pids["grandchild"])
    assert group_members(status["pgid"]) == []
    assert "timed out after 1s: sending SIGTERM" in run.output


def test_time_limit_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        {"train.py": SLEEPER},
        arguments=["ignore-term"],
        max_duration=0.5,
        grace_seconds=1,
    )
    started = time.monotonic()
    assert run.run(timeout=60) == 1
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 15
    assert run.status["status"] == "timed_out"
    assert run.status["signal"] == "SIGKILL"
    assert group_members(run.status["pgid"]) == []


def start_and_wait_until_ready(run: Run) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = run.start()
    pids_file = run.outputs / "pids.json"
    run.wait_for(lambda: pids_file.exists() and run.status.get("status") == "running")
    return proc, json.loads(pids_file.read_text())


def test_sigterm_to_the_launcher_cancels_the_run(tmp_path: Path) -> None:
    run = Run(tmp_path, {"train.py": SLEEPER}, arguments=["graceful"], grace_seconds=5)
    proc, pids = start_and_wait_until_ready(run)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 1
    finally:
        proc.kill()
        proc.wait()
    status = run.status
    assert status["status"] == "canceled"
    assert status["message"] == "canceled (SIGTERM)"
    assert (run.outputs / "got-term").exists()  # the script saw SIGTERM and could clean up
    assert "shutting down cleanly" in run.output
    assert not alive(pids["pid"]) and not alive(pids["grandchild"])
    assert group_members(status["pgid"]) == []


def test_second_signal_kills_without_waiting_for_the_grace_period(tmp_path: Path) -> None:
    run = Run(tmp_path, {"train.py": SLEEPER}, arguments=["ignore-term"], grace_seconds=60)
    proc, pids = start_and_wait_until_ready(run)
    try:
        proc.send_signal(signal.SIGINT)
        run.wait_for(lambda: "sending SIGTERM" in run.output)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 1
    finally:
        proc.kill()
        proc.wait()
    assert run.status["status"] == "canceled"
    assert run.status["message"] == "canceled (SIGINT)"
    assert group_members(run.status["pgid"]) == []
    assert not alive(pids["grandchild"])


def test_children_left_behind_by_a_completed_run_are_killed(tmp_path: Path) -> None:
    train = script(
        """
        import json, os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                 stdout=subprocess.DEVNULL)
        with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "pid"), "w") as f:
            f.write(str(child.pid))
        """
    )
    run = Run(tmp_path, {"train.py": train})
    assert run.run(timeout=60) == 0
    assert not alive(int((run.outputs / "pid").read_text()))
    assert group_members(run.status["pgid"]) == []


# --- snapshot ----------------------------------------------------------------------------------


def test_symlinks_in_the_tree_are_kept_as_links(tmp_path: Path) -> None:
    train = script(
        """
        import os
        executable = os.access("tool.sh", os.X_OK)
        print(open("current.cfg").read(), open("conf/base.cfg").read(), executable)
        """
    )
    run = Run(
        tmp_path,
        {
            "train.py": train,
            "configs/v2.cfg": "v2",
            "configs/base.cfg": "base",
            "tool.sh": "#!/bin/sh\n",
        },
        links={"current.cfg": "configs/v2.cfg", "conf": "configs", "conf2/up": "../configs"},
        executable=("tool.sh",),
    )
    assert run.run() == 0, run.output
    src = run.dir / "src"
    assert os.readlink(src / "current.cfg") == "configs/v2.cfg"
    assert os.readlink(src / "conf") == "configs"
    assert os.readlink(src / "conf2" / "up") == "../configs"
    assert (src / "tool.sh").stat().st_mode & 0o777 == 0o755
    assert (src / "train.py").stat().st_mode & 0o777 == 0o644
    assert run.output.strip() == "v2 base True"


@pytest.mark.parametrize(
    ("link", "target"),
    [("evil", "../../../etc"), ("sub/evil", "../.."), ("abs", "/etc/passwd")],
)
def test_links_pointing_outside_are_refused(tmp_path: Path, link: str, target: str) -> None:
    run = Run(tmp_path, {"train.py": "print('must not run')\n"}, links={link: target})
    assert run.run() == 1
    status = run.status
    assert status["status"] == "failed"
    assert f"snapshot link {link}" in status["message"]
    assert status["child_pid"] is None
    assert "must not run" not in run.output
    assert f"[trainform] run failed: snapshot link {link}" in run.output


def test_chained_links_that_end_up_outside_are_refused(tmp_path: Path) -> None:
    blob_dir = tmp_path / "blobs"
    manifest = store_tree(blob_dir, {"a.txt": "a"}, links={"here": ".", "out": "here/.."})
    with pytest.raises(LauncherError, match=r"snapshot link out -> here/\.\. resolves outside"):
        materialise(manifest, blob_dir, tmp_path / "dest")
    assert not os.path.lexists(tmp_path / "dest" / "out")


def test_blob_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    run = Run(tmp_path, {"train.py": "print('must not run')\n", "data/x.bin": b"\x00" * 10})
    entry = next(e for e in run.spec["manifest"]["entries"] if e["path"] == "data/x.bin")
    blob = Path(run.spec["blob_dir"]) / entry["sha256"][:2] / entry["sha256"][2:]
    blob.write_bytes(b"\x01" * 10)
    assert run.run() == 1
    message = run.status["message"]
    assert message.startswith("snapshot file data/x.bin: its blob does not match its sha256")
    assert not (run.dir / "src" / "data" / "x.bin").exists()
    assert list((run.dir / "src" / "data").iterdir()) == []  # no temporary file left


def test_missing_blob_is_refused(tmp_path: Path) -> None:
    blob_dir = tmp_path / "blobs"
    manifest = store_tree(blob_dir, {"a/b.py": "x"})
    shutil.rmtree(blob_dir)
    with pytest.raises(LauncherError, match=r"snapshot file a/b.py: its blob .* is missing"):
        materialise(manifest, blob_dir, tmp_path / "dest")


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", ""])
def test_manifest_paths_must_stay_inside(tmp_path: Path, path: str) -> None:
    entry = {"path": path, "kind": "file", "sha256": "0" * 64, "size": 0, "mode": 0o644}
    with pytest.raises(LauncherError, match="snapshot path"):
        materialise({"entries": [entry]}, tmp_path / "blobs", tmp_path / "dest")


def test_files_are_never_written_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "d").symlink_to(outside)
    blob_dir = tmp_path / "blobs"
    manifest = store_tree(blob_dir, {"d/x.py": "x"})
    with pytest.raises(LauncherError, match=r"snapshot path d/x\.py: d is a symbolic link"):
        materialise(manifest, blob_dir, dest)
    assert list(outside.iterdir()) == []


def test_materialise_replaces_earlier_content(tmp_path: Path) -> None:
    blob_dir = tmp_path / "blobs"
    dest = tmp_path / "dest"
    materialise(store_tree(blob_dir, {"a.py": "old"}, links={"l": "a.py"}), blob_dir, dest)
    materialise(store_tree(blob_dir, {"a.py": "new", "l": "now a file"}), blob_dir, dest)
    assert (dest / "a.py").read_text() == "new"
    assert not (dest / "l").is_symlink() and (dest / "l").read_text() == "now a file"


# --- interpreters and environments -------------------------------------------------------------


def test_resolve_python() -> None:
    assert resolve_python(sys.executable) == sys.executable
    found = shutil.which("python3")
    assert found and resolve_python("python3") == found
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert Path(resolve_python(version)).exists()
    exact = ".".join(map(str, sys.version_info[:3]))
    assert Path(resolve_python(exact)).exists()
    with pytest.raises(
        LauncherError,
        match=r"python 3\.1 not found on this machine's PATH \(looked for python3\.1\)",
    ):
        resolve_python("3.1")
    with pytest.raises(LauncherError, match="does not exist"):
        resolve_python("/no/such/python")
    with pytest.raises(LauncherError, match="not found on this machine's PATH"):
        resolve_python("no-such-python-xyz")
    with pytest.raises(LauncherError, match="must be a command name"):
        resolve_python("bin/python")


def test_unknown_python_fails_the_run_before_it_starts(tmp_path: Path) -> None:
    env = {
        "python": "2.5",
        "user_managed": True,
        "requirements": [],
        "hash": "h",
        "cache_dir": "/x",
    }
    run = Run(tmp_path, {"train.py": ""}, environment=env)
    assert run.run() == 1
    assert run.status["status"] == "failed"
    assert run.status["message"] == (
        "python 2.5 not found on this machine's PATH (looked for python2.5)"
    )


REPORT_PREFIX = script(
    """
    import json, os, sys
    with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "python.json"), "w") as f:
        json.dump({"prefix": sys.prefix, "base": sys.base_prefix,
                   "virtual_env": os.environ.get("VIRTUAL_ENV")}, f)
    """
)


@pytest.mark.parametrize("user_managed", [True, False])
def test_environment_without_requirements_uses_the_interpreter_as_is(
    tmp_path: Path, user_managed: bool
) -> None:
    env = {
        "python": "python3",
        "user_managed": user_managed,
        "requirements": [] if not user_managed else ["ignored==1.0"],
        "hash": "e" * 32,
        "cache_dir": str(tmp_path / "envs"),
        "variables": {},
    }
    run = Run(tmp_path, {"train.py": REPORT_PREFIX}, environment=env)
    assert run.run() == 0, run.output
    assert run.status["environment"] == "as-is"
    assert run.status["python"] == shutil.which("python3")
    assert not (tmp_path / "envs").exists()  # nothing built, not even the cache folder


def managed(tmp_path: Path, requirements: list[str], key: str) -> dict[str, Any]:
    return {
        "python": sys.executable,
        "user_managed": False,
        "requirements": requirements,
        "hash": key,
        "cache_dir": str(tmp_path / "envs"),
        "variables": {},
    }


def offline_pip(find_links: Path) -> dict[str, str]:
    find_links.mkdir(parents=True, exist_ok=True)
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(find_links), "PIP_NO_CACHE_DIR": "1"}


def test_failed_environment_build_reports_pip_and_leaves_nothing(tmp_path: Path) -> None:
    key = "f" * 32
    env = managed(tmp_path, ["definitely-not-a-real-package-xyz==0.0.0"], key)
    run = Run(tmp_path, {"train.py": "print('must not run')\n"}, environment=env)
    assert run.run(env=offline_pip(tmp_path / "wheels")) == 1
    status = run.status
    assert status["status"] == "failed"
    message = status["message"]
    assert message.startswith("environment build failed: pip install exited with code 1")
    assert "definitely-not-a-real-package-xyz" in message  # pip's own words
    assert len(message.splitlines()) <= 21
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [f"{key}.lock"]
    assert "[environment]" in run.output and "must not run" not in run.output
    assert "definitely-not-a-real-package-xyz" in (run.dir / "launcher.log").read_text()


def test_managed_environment_is_built_once_then_reused(tmp_path: Path) -> None:
    """Two runs of the same environment start together: one builds it while the other waits
    for the lock, then reuses it."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    key = "a" * 32
    train = REPORT_PREFIX + "import tfprobe\nprint('tfprobe', tfprobe.VERSION)\n"
    env = managed(tmp_path, ["tfprobe==0.1"], key)
    first = Run(tmp_path, {"train.py": train}, environment=env)
    # The environment's console scripts must work from its final folder, although pip wrote
    # them while it was being built elsewhere.
    second = Run(
        tmp_path,
        {"x.txt": ""},
        run_id="run-2",
        script=None,
        command=["tfprobe", "hello"],
        environment=env,
    )
    procs = [run.start(offline_pip(wheels)) for run in (first, second)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], first.output + second.output
    assert sorted([first.status["environment"], second.status["environment"]]) == [
        "built",
        "reused",
    ]
    venv = tmp_path / "envs" / key
    assert first.status["python"] == second.status["python"] == str(venv / "bin" / "python")
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [key, f"{key}.lock"]
    assert (venv / ".complete").is_file()

    assert "tfprobe 0.1" in first.output
    seen = json.loads((first.outputs / "python.json").read_text())
    assert seen["prefix"] == str(venv) and seen["prefix"] != seen["base"]
    assert seen["virtual_env"] == str(venv)
    assert second.output.strip().endswith(f"tfprobe 0.1 {venv} hello")

    third = Run(tmp_path, {"train.py": train}, run_id="run-3", environment=env)
    assert third.run(env=offline_pip(wheels)) == 0, third.output
    assert third.status["environment"] == "reused"


def test_launcher_waits_for_the_environment_lock_and_can_be_canceled_meanwhile(
    tmp_path: Path,
) -> None:
    key = "b" * 32
    (tmp_path / "envs").mkdir()
    lock = (tmp_path / "envs" / f"{key}.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another launcher is building this environment
    try:
        run = Run(tmp_path, {"train.py": ""}, environment=managed(tmp_path, ["tfprobe"], key))
        proc = run.start()
        try:
            run.wait_for(lambda: "waiting for another run" in run.output)
            assert run.status["status"] == "preparing"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 1
        finally:
            proc.kill()
            proc.wait()
    finally:
        lock.close()
    assert run.status["status"] == "canceled"
    assert run.status["child_pid"] is None
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [f"{key}.lock"]


# --- the file itself -----------------------------------------------------------------------------


def test_the_files_shipped_to_targets_parse_as_python_3_8_and_import_only_what_is_shipped() -> None:
    """The launcher, trainform.tracking and the capture sources run on targets: Python 3.8,
    the standard library, and one another (what LIB_FILES ships), nothing else."""
    from trainform.runs.shipping import LIB_FILES

    shipped = {
        rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for rel in LIB_FILES
    }
    for path in LIB_FILES.values():
        source = path.read_text()
        ast.parse(source, feature_version=(3, 8))
        tree = ast.parse(source)
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            f"{node.module}.{alias.name}" if node.module in shipped else node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0
            for alias in node.names
        }
        foreign = {
            name
            for name in imported
            if name.split(".")[0] not in sys.stdlib_module_names
            and name not in shipped
            and name.rsplit(".", 1)[0] not in shipped
        }
        assert not foreign, (path, foreign)


def test_bad_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, str(LAUNCHER)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "usage: launcher.py RUN_DIR" in proc.stderr
