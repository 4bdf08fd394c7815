"""A run's outputs through the real CLI on local compute, as a hostile (or careless) run would
leave them: an ``outputs_dir`` that names a folder outside the run's folder is refused at plan
time, and collection copies no link that leads out of the outputs folder and no FIFO, with a
warning naming each, while the run still completes.

(The same rules for SSH hosts: tests/integration/test_ssh_outputs.py; for what any target can
send back: tests/unit/test_tarsafe.py.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import failed, ok

LOCAL = 'compute "local" {\n  type = "local"\n}\n'


def run_block(outputs_dir: str | None = None) -> str:
    extra = f"  outputs_dir = {json.dumps(outputs_dir)}\n" if outputs_dir is not None else ""
    return (
        'run "train" {\n'
        '  experiment = "tests"\n'
        "  compute    = compute.local\n"
        '  source_dir = "src"\n'
        '  script     = "train.py"\n'
        f"{extra}"
        "}\n"
    )


@pytest.mark.parametrize(
    "outputs_dir, why",
    [
        ("/etc/ssh", "it is absolute"),
        ("../../../../etc/ssh", "it climbs out with '..'"),
        ("out/../../x", "it climbs out with '..'"),
        (".", "it names the folder itself"),
    ],
)
def test_an_outputs_dir_outside_the_run_folder_is_refused_at_plan_time(
    cli, outputs_dir: str, why: str
) -> None:
    cli.write("main.train.hcl", LOCAL + run_block(outputs_dir))
    cli.write("src/train.py", "print('should never run')\n")
    for command in (["validate"], ["plan"], ["apply", "-auto-approve"]):
        result = failed(cli(*command), f"outputs_dir {outputs_dir!r}", why, "main.train.hcl:")
        assert "run.train" in result.err
        assert "Traceback" not in result.all
    assert json.loads(ok(cli("runs", "list", "--json")).out) == []
    assert not list(cli.cwd.glob(".trainform/workspaces/*/runs/*"))


# The script leaves, in its outputs folder: a model, a link to it, links that lead out (to a
# file of this machine, up through "..", to the run's own folder), a FIFO and a socket.
HOSTILE_SCRIPT = """\
import os, socket, sys
out = os.environ["TRAINFORM_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "sub"))
with open(os.path.join(out, "model.bin"), "w") as f:
    f.write("weights")
os.symlink("model.bin", os.path.join(out, "latest"))
os.symlink("../model.bin", os.path.join(out, "sub", "model"))
os.symlink(sys.argv[1], os.path.join(out, "secret-abs"))
os.symlink("../" * 40 + sys.argv[1].lstrip("/"), os.path.join(out, "secret-up"))
os.symlink("..", os.path.join(out, "run-folder"))
os.symlink("/etc", os.path.join(out, "etc"))
os.mkfifo(os.path.join(out, "pipe"))
os.chdir(out)  # a socket's path is short
socket.socket(socket.AF_UNIX).bind("sock")
print("outputs written", flush=True)
"""

SKIPPED = ("secret-abs", "secret-up", "run-folder", "etc", "pipe", "sock")


def test_local_collection_skips_links_out_fifos_and_sockets_with_a_warning(
    cli, tmp_path: Path
) -> None:
    secret = tmp_path / "outside" / "secret.key"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY of this machine\n")
    secret.chmod(0o600)
    config = run_block().replace('"train.py"\n', f'"train.py"\n  arguments = ["{secret}"]\n')
    cli.write("main.train.hcl", LOCAL + config)
    cli.write("src/train.py", HOSTILE_SCRIPT)
    result = ok(cli("apply", "-auto-approve"))
    assert "run.train: Completed" in result.out, result.all
    for name in SKIPPED:
        assert f"skipped {name!r} (" in result.err, (name, result.err)
    assert "a FIFO" in result.err and "a socket" in result.err

    run = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    outputs = Path(run["outputs_path"])
    assert (outputs / "model.bin").read_text() == "weights"
    assert os.readlink(outputs / "latest") == "model.bin"
    assert (outputs / "sub" / "model").read_text() == "weights"
    for name in SKIPPED:
        assert not os.path.lexists(outputs / name), name
    root = os.path.realpath(outputs)
    for folder, dirs, files in os.walk(outputs):
        for name in dirs + files:
            real = os.path.realpath(os.path.join(folder, name))
            assert real == root or real.startswith(root + os.sep), (name, real)
    store = cli.cwd / ".trainform" / "workspaces"
    held = [p for p in store.rglob("*") if not p.is_symlink() and p.is_file()]
    assert not [p for p in held if b"PRIVATE KEY" in p.read_bytes()]

    copied = tmp_path / "copied"
    ok(cli("runs", "outputs", "run.train", "--to", str(copied)))
    assert (copied / "model.bin").read_text() == "weights"
    ok(cli("plan", "-detailed-exitcode"), 0)  # completed and collected: nothing to do
