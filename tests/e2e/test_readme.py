"""The README's own commands, run verbatim: the "Try it" line (a new venv, the install, and the
quick-start example applied end to end) in a copy of the repository, and the "A first
configuration" sequence (init, validate, plan, apply answered "yes" on a terminal, show,
destroy answered "yes") on the README's configuration; the "## Spark" section's examples
validated, and its laptop commands run examples/spark on a real local[2] master; the "## Pipelines
and data" commands run examples/pipeline (reuse with early cutoff included). The CI recipe, the state restore
recipe and the state backend, workspace and version commands are run verbatim in
test_cli_forms.py, test_state_backup.py and test_readme_state.py."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import base_env, block_after, unavailable
from spark import missing

ROOT = Path(__file__).resolve().parents[2]


def test_try_it_runs_verbatim_in_a_copy_of_the_repository(tmp_path: Path) -> None:
    line = block_after("**Try it**", "sh").strip()
    assert "\n" not in line, "Try it is one line"
    copy = tmp_path / "trainform"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            dest = copy / os.fsdecode(name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    env = base_env()
    env.pop("VIRTUAL_ENV", None)
    # the machine's python3, as a new user has it (not this test run's venv)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
    )
    proc = subprocess.run(
        ["sh", "-c", line], cwd=copy, env=env, capture_output=True, text=True, timeout=900
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Apply complete!" in out, out[-4000:]
    assert "run.train" in out and "epoch" in out, out[-4000:]
    assert re.search(r'model\s+= ".*/outputs/model\.json"', out), out[-4000:]


def drive(script: str, cwd: Path, env: dict[str, str], timeout: float = 240) -> tuple[int, str]:
    """Run ``script`` with sh on a pseudo-terminal, answering "yes" to every
    confirmation prompt; returns the exit code and everything printed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a shell on the terminal
        os.chdir(cwd)
        os.execvpe("sh", ["sh", "-c", script], env)
    out = b""
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if out.count(b"Enter a value") > answered:
                answered += 1
                os.write(fd, b"yes\n")
        elif os.waitpid(pid, os.WNOHANG)[0]:
            break
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_a_first_configuration_sequence_runs_verbatim(tmp_path: Path) -> None:
    config = block_after("## A first configuration", "hcl")
    script = block_after("## A first configuration", "sh")
    (tmp_path / "main.train.hcl").write_text(config)
    env = base_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    code, out = drive("set -e\n" + script, tmp_path, env)
    assert code == 0, out
    assert "compute.gpu[0] will be attached" in out, out
    assert "Apply complete!" in out and "Destroy complete!" in out, out
    assert out.count("Enter a value") == 2, out
    assert "cpus" in out, out


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    """.ci/run holds the README's test command as one of its own lines, unchanged."""
    line = block_after("**Test it**", "sh").strip()
    assert "pytest" in line and "\n" not in line
    assert line in (ROOT / ".ci" / "run").read_text().splitlines()


def validated(folder: Path, blocks: int) -> None:
    """`trainform validate` in ``folder`` succeeds and counts ``blocks`` resource blocks."""
    done = subprocess.run(
        [sys.executable, "-m", "trainform", "validate"],
        cwd=folder,
        env=base_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{blocks} resource block(s)" in done.stdout, done.stdout


def test_the_slurm_example_is_a_valid_configuration(tmp_path: Path) -> None:
    """The "## Slurm" example's attributes and blocks are the schema's (it names a login node
    that does not exist, so it is validated, not applied; the same options are applied on the
    real test cluster in tests/integration/test_slurm_*.py)."""
    (tmp_path / "main.train.hcl").write_text(block_after("## Slurm", "hcl"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hello')\n")
    validated(tmp_path, 2)


def test_the_spark_examples_are_valid_configurations(tmp_path: Path) -> None:
    """The "## Spark" section's standalone and gateway examples are the schema's (they name
    hosts that do not exist, so they are validated, not applied; a real standalone cluster
    is attached in tests/integration/test_spark_*.py, and the laptop example below runs)."""
    for marker, blocks in (("## Spark", 3), ("**A gateway.**", 1)):
        folder = tmp_path / str(blocks)
        (folder / "src").mkdir(parents=True)
        (folder / "src" / "features.py").write_text("print('features')\n")
        (folder / "main.train.hcl").write_text(block_after(marker, "hcl"))
        validated(folder, blocks)


def run_section(
    folder: Path, example: str, marker: str, timeout: int
) -> subprocess.CompletedProcess[str]:
    """The shell block after ``marker``, verbatim, in ``folder`` holding a fresh copy of
    ``examples/EXAMPLE``, with this interpreter's ``trainform`` first on PATH; it must
    succeed."""
    script = block_after(marker, "sh")
    shutil.copytree(ROOT / "examples" / example, folder / "examples" / example)
    shutil.rmtree(folder / "examples" / example / ".trainform", ignore_errors=True)
    env = base_env()
    env.pop("SPARK_HOME", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        ["sh", "-c", "set -e\n" + script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return done


def test_the_spark_laptop_commands_run_examples_spark_verbatim(tmp_path: Path) -> None:
    """The "On a laptop" commands, verbatim, from a folder holding a copy of examples/spark and
    the repository's `.venv-spark` (pyspark 4.3, as scripts/install-test-deps makes it): the
    word count runs on a real local[2] master with that interpreter, its helper module
    imported by the executors from the snapshot's zip, and its counts collected."""
    if missing():
        unavailable(missing())
    (tmp_path / ".venv-spark").symlink_to(ROOT / ".venv-spark")
    done = run_section(tmp_path, "spark", "**On a laptop**", timeout=900)
    out = done.stdout + done.stderr
    assert "Apply complete!" in out, out[-6000:]
    assert "run.words" in out and "| it: 8" in out, out[-6000:]
    # runs show: the application (a local master's id comes from the driver's REST API,
    # which a driver slowed by a loaded machine may not answer in time: "(id not logged)")
    assert re.search(r"spark app +(local-[0-9]+|\(id not logged\))", out), out[-6000:]
    assert "completed" in out, out[-6000:]
    counts = re.findall(r"^\S*/outputs/counts\.json$", done.stdout.replace('"', ""), re.M)
    assert counts, out[-6000:]
    assert json.loads(Path(counts[-1]).read_text()) == {
        "it": 8,
        "of": 8,
        "the": 8,
        "was": 8,
        "age": 2,
    }


def test_the_pipeline_section_shows_examples_pipeline_and_its_commands_run_verbatim(
    tmp_path: Path,
) -> None:
    """The "## Pipelines and data" configuration is examples/pipeline's, and the section's
    commands, verbatim, in a folder holding a copy of it: prep and train run; after a change
    to prep's code only, plan says train may be resubmitted and apply reuses it (prep's
    rows came out the same); after a row added to the data, both run again and the model
    has seen it."""
    example = ROOT / "examples" / "pipeline"
    assert block_after("## Pipelines and data", "hcl") == (example / "main.train.hcl").read_text()
    done = run_section(tmp_path, "pipeline", "## Pipelines and data", timeout=600)
    out = done.stdout + done.stderr
    assert "prep: 6 rows from 2 files" in out, out[-6000:]
    assert "train: sales = 5.22 * temp + 30.66 (6 rows)" in out, out[-6000:]
    assert "# run.prep will be resubmitted: prep.py changed" in out, out[-6000:]
    assert (
        "# run.train may be resubmitted, depending on run.prep's outputs "
        "(decided by apply once they are known)"
    ) in out, out[-6000:]
    assert (
        "run.train: Reused: its inputs came out as its last run read them, "
        "so it was not resubmitted"
    ) in out, out[-6000:]
    assert "train: sales = 5.17 * temp + 31.47 (7 rows)" in out, out[-6000:]
    assert out.count("Apply complete!") == 3, out[-6000:]
    assert '"run.prep" -> "run.train" [label = "features"];' in out, out[-6000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"a": 5.166, "b": 31.466, "rows": 7}


def test_the_pipeline_sections_ssh_dataset_is_a_valid_configuration(tmp_path: Path) -> None:
    """The "Data that stays where it is" example, beside the ssh compute it names (a host
    that does not exist: validated, not planned; tests/integration/test_ssh_datasets.py
    hashes and links a real one)."""
    (tmp_path / "id_ed25519").write_text("not read by validate\n")
    (tmp_path / "main.train.hcl").write_text(
        'compute "gpu" {\n  type     = "ssh"\n  hosts    = ["gpu1.lab.example"]\n  username = "ml"\n'
        '  private_key_file = "id_ed25519"\n}\n\n'
        + block_after("**Data that stays where it is.**", "hcl")
    )
    validated(tmp_path, 2)
