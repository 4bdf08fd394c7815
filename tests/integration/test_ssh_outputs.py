"""Outputs brought back from an SSH host that does not play fair, through the real CLI against
a real OpenSSH server on 127.0.0.1 (fixtures in conftest.py), logged in as the unprivileged
user tfuser.

- The host's user puts a `tar` of their own first on their PATH; when trainform collects a
  run's outputs it sends the four-member stream of issue 11 (a file `t`; `a` -> `.`; `t`
  replaced by a link that climbs out through `a`; a hard link `h` -> `t`). trainform runs as
  root here, tfuser cannot read the secret the link aims at, and trainform must not copy it.
- With the host's real `tar`, collection follows the same rules as on local compute: links
  that lead out of the outputs folder and FIFOs are skipped with a warning naming each, and
  the run completes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import ok

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, TestUser, UserKey


def config(server: SSHServer, key: UserKey, workdir: str, script_args: list[str]) -> str:
    return f"""\
compute "box" {{
  type             = "ssh"
  address          = "{server.address}"
  port             = {server.port}
  username         = "tfuser"
  workdir          = {json.dumps(workdir)}
  private_key_file = {json.dumps(str(key.private_path))}
  host_key         = "{server.fingerprint}"
}}

environment "system" {{
  python       = "python3"
  user_managed = true
}}

run "train" {{
  experiment   = "hostile-outputs"
  compute      = compute.box
  environment  = environment.system
  source_dir   = "src"
  script       = "train.py"
  arguments    = {json.dumps(script_args)}
  max_duration = "2m"
}}
"""


def held_by(folder: Path, needle: bytes) -> list[Path]:
    """Regular files (links not followed) under ``folder`` that contain ``needle``."""
    files = [p for p in folder.rglob("*") if not p.is_symlink() and p.is_file()]
    return [p for p in files if needle in p.read_bytes()]


@pytest.fixture
def root_secret() -> Iterator[tuple[Path, bytes]]:
    """A file only root can read (0600 in a 0700 folder of root's): the trainform process
    (root in these tests) can, the host's user (tfuser) cannot."""
    folder = Path(tempfile.mkdtemp(prefix="tf-root-only-"))
    folder.chmod(0o700)
    secret = folder / "host_key"
    content = b"-----ROOT ONLY " + os.urandom(8).hex().encode() + b"-----\n"
    secret.write_bytes(content)
    secret.chmod(0o600)
    yield secret, content
    shutil.rmtree(folder, ignore_errors=True)


# Stands in for `tar` on tfuser's PATH: the real tar, except for `tar -c ... -C <a run's
# outputs>`, which gets the hostile stream (and a marker file, so the test knows it ran).
FAKE_TAR = """\
#!/usr/bin/env python3
import io, os, sys, tarfile
args = sys.argv[1:]
folder = args[args.index("-C") + 1] if "-C" in args else ""
if "-c" not in args or not folder.endswith("/src/outputs"):
    os.execv("/usr/bin/tar", ["tar", *args])
open({marker!r}, "w").write(folder)
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
    def add(name, kind, data=b"", link=""):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.linkname, info.mode = kind, len(data), link, 0o644
        tar.addfile(info, io.BytesIO(data))
    add("t", tarfile.REGTYPE, b"harmless")
    add("a", tarfile.SYMTYPE, link=".")
    add("t", tarfile.SYMTYPE, link="a/" * 20 + "../" * 20 + {secret!r})
    add("h", tarfile.LNKTYPE, link="t")
"""


@pytest.fixture
def hostile_path_server(
    sshd_factory: Callable[..., SSHServer], remote_tmp: str, tfuser: TestUser
) -> Iterator[tuple[SSHServer, Path]]:
    """A server whose sessions find tfuser's own `bin` (with the fake tar) first on PATH;
    yields it and the marker the fake tar writes."""
    bin_dir = Path(remote_tmp) / "bin"
    bin_dir.mkdir()
    marker = Path(remote_tmp) / "fake-tar-ran"
    server = sshd_factory()
    server.stop()
    with server.config_path.open("a") as f:
        f.write(f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin\n")
    server.start()
    yield server, marker
    server.stop()


def test_a_hostile_tar_on_the_hosts_path_copies_nothing_of_this_machine(
    cli: CLI,
    hostile_path_server: tuple[SSHServer, Path],
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    root_secret: tuple[Path, bytes],
) -> None:
    server, marker = hostile_path_server
    secret, content = root_secret
    fake = Path(remote_tmp) / "bin" / "tar"
    fake.write_text(FAKE_TAR.format(marker=str(marker), secret=str(secret).lstrip("/")))
    fake.chmod(0o755)
    for path in (fake.parent, fake):
        os.chown(path, tfuser.uid, tfuser.gid)
    cli.write("main.train.hcl", config(server, user_key, f"{remote_tmp}/tf", []))
    cli.write(
        "src/train.py",
        "import os\n"
        "open(os.path.join(os.environ['TRAINFORM_OUTPUT_DIR'], 'model.bin'), 'w').write('w')\n",
    )

    result = cli("apply", "-auto-approve")
    assert marker.exists(), f"the host's own tar did not run:\n{result.all}"
    assert marker.read_text().endswith("/src/outputs")
    assert "Traceback" not in result.all
    assert held_by(cli.cwd / ".trainform", content) == []
    outputs = cli.cwd / ".trainform" / "workspaces" / "default" / "runs"
    assert not list(outputs.glob("*/outputs/h")) and not list(outputs.glob("*/outputs/t"))
    ok(result)
    assert "run.train: Completed" in result.out, result.all
    assert "skipped 't' (a link to 'a/a/" in result.err, result.err
    assert "skipped 'h' (a hard link to 't'" in result.err, result.err


# Leaves, in the outputs folder: a model, a link to it, links out (to a file of the trainform
# machine given as argument, up through "..", to the run's own folder, to /etc) and a FIFO.
HOSTILE_SCRIPT = """\
import os, sys
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
"""


def test_ssh_collection_skips_links_out_and_fifos_as_local_compute_does(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    root_secret: tuple[Path, bytes],
) -> None:
    secret, content = root_secret
    cli.write("main.train.hcl", config(sshd, user_key, f"{remote_tmp}/tf", [str(secret)]))
    cli.write("src/train.py", HOSTILE_SCRIPT)
    result = ok(cli("apply", "-auto-approve"))
    assert "run.train: Completed" in result.out, result.all
    for name in ("secret-abs", "secret-up", "run-folder", "etc", "pipe"):
        assert f"skipped {name!r} (" in result.err, (name, result.err)

    run = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    outputs = Path(run["outputs_path"])
    assert (outputs / "model.bin").read_text() == "weights"
    assert os.readlink(outputs / "latest") == "model.bin"
    assert (outputs / "sub" / "model").read_text() == "weights"
    assert sorted(p.name for p in outputs.iterdir()) == ["latest", "model.bin", "sub"]
    assert held_by(cli.cwd / ".trainform", content) == []
