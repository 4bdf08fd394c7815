"""Datasets that sit on an ssh compute's host (``source = "ssh://HOST/PATH"`` with
``compute = compute.box``), through the real CLI against a real OpenSSH server on 127.0.0.1
(tfuser): hashed on the host, used in place by a run on that compute (``input_mode =
"link"``), never uploaded; a file changed on the host plans as a changed dataset and
resubmits the run; runs elsewhere, a missing compute and a host not of the compute are
refused at plan with the file and line.

The host is this machine: the data folder is made under tfuser's home (``remote_tmp``) through
the filesystem, and the host's hash cache is read there too.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import failed, ok
from test_ssh_compute import ENVIRONMENT, compute_block, run_block, upload_of

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, TestUser, UserKey

DATA = {"f1.csv": "a,1\n" * 50, "sub/f2.csv": "b,2\n" * 70}

TRAIN = """\
import hashlib, os
p = os.environ["TRAINFORM_INPUT_RAW"]
print("input at", p)
for folder, _dirs, files in sorted(os.walk(p)):
    for name in sorted(files):
        full = os.path.join(folder, name)
        print("read", os.path.relpath(full, p), hashlib.sha256(open(full, "rb").read()).hexdigest())
"""


def put_on_host(folder: Path, files: dict[str, str], user: TestUser) -> None:
    """Write files under ``folder`` on the host (this machine), owned by tfuser."""
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for place in [folder, *folder.rglob("*")]:
        os.chown(place, user.uid, user.gid)


def dataset_block(source: str, compute: str | None = "compute.box") -> str:
    line = f"  compute = {compute}\n" if compute else ""
    return f'dataset "raw" {{\n  source = "{source}"\n{line}}}\n'


def reads(log: str) -> dict[str, str]:
    """What the run printed it read: relative path -> sha256."""
    found = {}
    for line in log.splitlines():
        if line.startswith("read "):
            _, rel, digest = line.split(" ", 2)
            found[rel] = digest
    return found


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_run_on_the_ssh_compute_reads_an_ssh_dataset_in_place(
    cli: CLI, sshd: SSHServer, user_key: UserKey, tfuser: TestUser, remote_tmp: str
) -> None:
    data = Path(remote_tmp) / "data"
    put_on_host(data, DATA, tfuser)
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + ENVIRONMENT
        + dataset_block(f"ssh://{sshd.address}{data}")
        + run_block(input_mode="link").replace("}\n", "  inputs = { raw = dataset.raw }\n}\n"),
    )
    cli.write("src/train.py", TRAIN)
    try:
        # 1. The run reads the data where it sits on the host; only its script travelled.
        first = ok(cli("apply", "-auto-approve", timeout=180))
        assert "run.train: Completed" in first.out, first.all
        log = ok(cli("runs", "logs", "run.train")).out
        assert f"input at {data}\n" in log, log
        assert reads(log) == {rel: sha(text) for rel, text in DATA.items()}, log
        assert upload_of(cli)["files"] == 1, upload_of(cli)

        # 2. The host keeps a hash cache (rel path -> size, mtime, inode, sha256); a plan
        # trusts it for unchanged files: a forged digest there shows as a changed file.
        cache = (
            tfuser.home
            / ".cache/trainform/dataset-hashes"
            / f"{hashlib.sha256(str(data).encode()).hexdigest()}.json"
        )
        kept = json.loads(cache.read_text())
        assert sorted(kept) == sorted(DATA) and kept["f1.csv"][3] == sha(DATA["f1.csv"]), kept
        ok(cli("plan", "-detailed-exitcode"), 0)
        forged = {**kept, "f1.csv": [*kept["f1.csv"][:3], "0" * 64]}
        cache.write_text(json.dumps(forged))
        plan = ok(cli("plan", "-detailed-exitcode"), 2).out
        assert "dataset.raw changed: 1 file changed" in plan, plan
        cache.write_text(json.dumps(kept))
        ok(cli("plan", "-detailed-exitcode"), 0)

        # 3. A file changes on the host: the dataset changes and the run is resubmitted.
        first_id = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)["id"]
        (data / "sub/f2.csv").write_text("b,3\n" * 70)
        plan = ok(cli("plan", "-detailed-exitcode"), 2).out
        assert "dataset.raw changed: 1 file changed" in plan, plan
        assert "# run.train will be resubmitted: input raw changed (from dataset.raw)" in plan
        second = ok(cli("apply", "-auto-approve", timeout=180))
        assert "run.train: Completed" in second.out, second.all
        assert json.loads(ok(cli("runs", "show", "run.train", "--json")).out)["id"] != first_id
        log = ok(cli("runs", "logs", "run.train")).out
        assert reads(log)["sub/f2.csv"] == sha("b,3\n" * 70), log
        assert upload_of(cli)["files"] == 0, upload_of(cli)
        ok(cli("plan", "-detailed-exitcode"), 0)
    finally:
        ok(cli("destroy", "-auto-approve", timeout=120))
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*.csv")) == sorted(DATA)


def test_a_run_elsewhere_gets_a_copy_of_an_ssh_dataset_fetched_once(
    cli: CLI, sshd: SSHServer, user_key: UserKey, tfuser: TestUser, remote_tmp: str
) -> None:
    """A run on local compute copies (input_mode = "copy") a dataset that sits on the ssh
    compute's host: fetched into the workspace's store once, checked against the host's
    hashes, read by the run; a second run of the same data fetches nothing."""
    data = Path(remote_tmp) / "data"
    put_on_host(data, DATA, tfuser)
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + 'compute "local" {\n  type = "local"\n}\n'
        + dataset_block(f"ssh://{sshd.address}{data}")
        + 'run "train" {\n  experiment = "x"\n  compute = compute.local\n'
        '  source_dir = "src"\n  script = "train.py"\n  inputs = { raw = dataset.raw }\n}\n',
    )
    cli.write("src/train.py", TRAIN)
    first = ok(cli("apply", "-auto-approve", timeout=180))
    assert f"fetching ssh://{sshd.address}{data} (2 file(s))" in first.out, first.all
    log = ok(cli("runs", "logs", "run.train")).out
    assert reads(log) == {rel: sha(text) for rel, text in DATA.items()}, log
    assert "/inputs/raw" in log, log  # a copy in the run's folder, not the host's path
    cli.write("src/train.py", TRAIN + "# changed\n")
    second = ok(cli("apply", "-auto-approve", timeout=180))
    assert "run.train: Completed" in second.out and "fetching" not in second.out, second.all
    assert reads(ok(cli("runs", "logs", "run.train")).out) == reads(log)


def test_ssh_datasets_are_refused_at_plan_off_their_compute_or_host(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    box = compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
    pool = compute_block(
        sshd, f"{remote_tmp}/tf", name="pool", key=user_key, hosts=["127.0.0.1:2222"]
    )
    local = 'compute "local" {\n  type = "local"\n}\n'
    source = f"ssh://{sshd.address}{remote_tmp}/data"
    reader = (
        'run "train" {\n  experiment = "x"\n  compute = compute.local\n  source_dir = "src"\n'
        '  script = "train.py"\n  inputs = { raw = dataset.raw }\n  input_mode = "%s"\n}\n'
    )
    cli.write("src/train.py", TRAIN)

    # A run on local compute cannot use data that sits on the ssh compute's host.
    cli.write("main.train.hcl", box + local + dataset_block(source) + reader % "link")
    out = failed(cli("plan"), "run.train").all
    assert (
        "input raw: dataset.raw sits on the host of compute.box "
        f"({source}), so the run must run on compute.box, not on compute.local"
    ) in out, out
    assert "main.train.hcl:" in out, out

    # No compute, or a host that is not the compute's.
    cli.write("main.train.hcl", box + dataset_block(source, compute=None))
    out = failed(cli("plan"), "an ssh:// source needs compute = compute.NAME").all
    line = 1 + box.count("\n")
    assert f"main.train.hcl:{line}" in out, out
    cli.write("main.train.hcl", pool + dataset_block(source, compute="compute.pool"))
    out = failed(
        cli("plan"), f"host '{sshd.address}' of '{source}' is not a host of compute.pool"
    ).all
    assert f"main.train.hcl:{1 + pool.count(chr(10))}" in out, out
    cli.write("main.train.hcl", local + dataset_block(source, compute="compute.local"))
    failed(cli("plan"), "compute must be an ssh compute")
    cli.write("main.train.hcl", box + dataset_block(f"ssh://{sshd.address}"))
    failed(cli("plan"), "must be ssh://HOST/ABSOLUTE/PATH")
