"""A dataset's transfer to an SSH compute through `trainform apply`, against `rsync -a -e ssh`.

    python bench/dataset_transfer.py       # as root: starts its own sshd on 127.0.0.1

The dataset is 2,000 files, 1 GiB in all, sizes log-normal, random (incompressible) content,
generated once (seeded) into a temporary folder under /tmp. The configuration declares it as
`dataset "big" { source = "data" }` and one run on an `ssh` compute (OpenSSH on 127.0.0.1,
the user tfuser, one key) whose script counts the files in TRAINFORM_INPUT_BIG. Every figure
is `trainform apply -auto-approve` timed end to end through the real CLI (start-up, hashing,
the local blob store, the upload, the run, its log); the bytes are the run's recorded
`upload` (`runs show --json`: the missing-blob query and the tar stream).

- (a) first transfer: the first apply into a fresh host workdir, against rsync's copy of the
  same folder into a fresh folder on the same host. Goal: <= 1.2x rsync.
- (b) unchanged re-use: an apply after a change to the run's code only (it resubmits, the data
  is already there), against the same apply of a configuration without the dataset. Goal:
  the dataset adds < 0.5 s.
- (c) one ~1 MiB file rewritten: the apply resubmits the run (its input changed). Goal: bytes
  sent < 1.1x that file's size. rsync's update of its copy is shown beside it.

Timed commands run with bytecode cached (PYTHONDONTWRITEBYTECODE dropped), as an installed
trainform has it. `--profile` also times the parts of a first transfer (hashing, the local
store copy, the tar stream) with trainform's own functions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssh_server import BenchServer, bench_server
from ssh_upload import make_tree, rewrite_one

SCRIPT = """import os, sys
root = os.environ.get("TRAINFORM_INPUT_BIG")
n = sum(len(files) for _, _, files in os.walk(root)) if root else 0
print("files:", n)
"""


def config(bench: BenchServer, workdir: str, with_data: bool) -> str:
    dataset = 'dataset "big" {\n  source = "data"\n}\n' if with_data else ""
    inputs = "  inputs     = { big = dataset.big }\n" if with_data else ""
    return (
        'compute "box" {\n'
        '  type             = "ssh"\n'
        f'  address          = "{bench.server.address}"\n'
        f"  port             = {bench.server.port}\n"
        '  username         = "tfuser"\n'
        f'  private_key_file = "{bench.key}"\n'
        f'  host_key         = "{bench.server.fingerprint}"\n'
        f'  workdir          = "{workdir}"\n'
        "}\n"
        f"{dataset}"
        'run "count" {\n'
        '  experiment = "bench"\n'
        "  compute    = compute.box\n"
        '  source_dir = "src"\n'
        '  script     = "count.py"\n'
        f"{inputs}"
        "}\n"
    )


def environment() -> dict[str, str]:
    # As installed: pip compiles an installed trainform's bytecode (this sandbox's
    # PYTHONDONTWRITEBYTECODE would add ~0.3 s of compiling to every trainform command).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRAINFORM_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["NO_COLOR"] = "1"
    return env


def apply(folder: Path, expect: str) -> float:
    """Seconds of `trainform apply -auto-approve` in ``folder``; checks the run printed
    ``expect``."""
    os.sync()  # what earlier steps wrote is not left to compete with the timed command
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trainform", "apply", "-auto-approve"],
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    out = done.stdout + done.stderr
    if done.returncode != 0 or expect not in out or "Apply complete!" not in out:
        raise SystemExit(f"apply in {folder} failed (wanted {expect!r}):\n{out[-4000:]}")
    return seconds


def plan(folder: Path) -> float:
    """Seconds of `trainform plan` in ``folder`` (nothing to do: the dataset hashed through
    the hash cache, one stat a file)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trainform", "plan"],
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "No changes" not in done.stdout:
        raise SystemExit(f"plan in {folder} failed or has changes:\n{done.stdout}{done.stderr}")
    return seconds


def upload(folder: Path) -> tuple[int, int]:
    """The last run's recorded upload: (files, bytes)."""
    done = subprocess.run(
        [sys.executable, "-m", "trainform", "runs", "show", "run.count", "--json"],
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(done.stdout)
    sent = shown.get("upload") or {}
    return int(sent.get("files", 0)), int(sent.get("bytes", 0))


def rsync(bench: BenchServer, src: Path, dest: str) -> tuple[float, int]:
    """Seconds of `rsync -a -e ssh src/ host:dest/` and its "Total bytes sent"."""
    ssh = shlex.join(bench.ssh_argv())
    os.sync()
    start = time.perf_counter()
    out = subprocess.run(
        ["rsync", "-a", "--stats", "-e", ssh, f"{src}/", f"{bench.login}:{dest}/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    seconds = time.perf_counter() - start
    found = re.search(r"^Total bytes sent: ([\d,]+)", out, re.M)
    assert found, out
    return seconds, int(found.group(1).replace(",", ""))


def touch_code(folder: Path, i: int) -> None:
    """A change to the run's code only: a new comment line (the fingerprint changes)."""
    script = folder / "src" / "count.py"
    script.write_text(script.read_text() + f"# change {i}\n")


def profile(bench: BenchServer, data: Path, scratch: Path) -> None:
    """The parts of a first transfer, with trainform's functions (as ssh_upload.py does):
    hashing, the copy into the local blob store, connect + query + tar stream into a fresh
    host folder (the host extracting as it reads), and the same tar stream into
    `cat > /dev/null` on the host (the stream over paramiko without the extraction)."""
    import tarfile

    from trainform.providers.ssh import upload_blobs
    from trainform.remote.ssh import _CHUNK, SSHConnection, _Channel, _CountingSink, add_to_tar
    from trainform.runs.snapshot import snapshot, store_blobs

    local = scratch / "profile"
    remote = bench.remote_dir("bench-dataset-profile-")
    try:
        os.sync()
        t0 = time.perf_counter()
        manifest = snapshot(data, local / "hashes", max_files=10**9, max_bytes=10**12).manifest
        t1 = time.perf_counter()
        store_blobs(manifest, data, local / "blobs")
        t2 = time.perf_counter()
        os.sync()
        wanted = sorted({e.sha256 for e in manifest.entries if e.kind == "file"})
        with SSHConnection(bench.target) as conn:
            t3 = time.perf_counter()
            blobs = local / "blobs"
            sent = upload_blobs(conn, wanted, blobs, f"{remote}/blobs", local / "known.json")
            t4 = time.perf_counter()
            channel = _Channel(conn, ["sh", "-c", "cat > /dev/null"], None, "bench")
            sink = _CountingSink(channel, None)
            with tarfile.open(fileobj=sink, mode="w|", bufsize=_CHUNK) as tar:
                for h in wanted:
                    add_to_tar(tar, f"{h[:2]}/{h[2:]}", blobs / h[:2] / h[2:])
            channel.chan.shutdown_write()
            while channel.read():
                pass
            channel.finish()
            channel.close()
            t5 = time.perf_counter()
    finally:
        shutil.rmtree(local, ignore_errors=True)
        shutil.rmtree(remote, ignore_errors=True)
    print(
        f"profile: hashing {t1 - t0:.2f} s, local store copy {t2 - t1:.2f} s, "
        f"query + tar stream into the host's blob folder {t4 - t3:.2f} s "
        f"({sent['bytes']:,} B), the same tar stream into cat > /dev/null {t5 - t4:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=7, help="rounds of (b)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if shutil.which("rsync") is None:
        raise SystemExit("rsync is needed on this machine (apt-get install -y rsync)")

    MIB = 1 << 20
    scratch = Path(tempfile.mkdtemp(prefix="trainform-bench-dataset-", dir="/tmp"))
    scratch.chmod(0o755)
    remotes: list[str] = []  # the host's folders, removed however the bench ends
    try:
        with bench_server() as bench:
            withd, without = scratch / "with", scratch / "without"
            for folder in (withd, without):
                (folder / "src").mkdir(parents=True)
                (folder / "src" / "count.py").write_text(SCRIPT)
            paths = make_tree(withd / "data", args.files, args.mib * MIB, seed=0)
            total = sum(p.stat().st_size for p in paths)
            remote_with = bench.remote_dir("bench-dataset-")
            remote_without = bench.remote_dir("bench-dataset-none-")
            rsync_dest = bench.remote_dir("bench-dataset-rsync-")
            remotes += [remote_with, remote_without, rsync_dest]
            (withd / "main.train.hcl").write_text(config(bench, remote_with, True))
            (without / "main.train.hcl").write_text(config(bench, remote_without, False))

            # (a) first transfers
            rsync_first, rsync_first_bytes = rsync(bench, withd / "data", rsync_dest)
            first = apply(withd, f"files: {len(paths)}")
            first_sent = upload(withd)
            apply(without, "files: 0")  # its own first apply, not a figure

            # (b) code change only, with and without the dataset, interleaved
            ours, bare = [], []
            for i in range(args.repeat):
                touch_code(withd, i)
                ours.append(apply(withd, f"files: {len(paths)}"))
                touch_code(without, i)
                bare.append(apply(without, "files: 0"))
            reuse_sent = upload(withd)
            plans, bare_plans = [], []
            for _ in range(args.repeat):
                plans.append(plan(withd))
                bare_plans.append(plan(without))

            # (c) one ~1 MiB file rewritten
            size = rewrite_one(paths, seed=1)
            changed = apply(withd, f"files: {len(paths)}")
            changed_sent = upload(withd)
            rsync_changed, rsync_changed_bytes = rsync(bench, withd / "data", rsync_dest)

            if args.profile:
                profile(bench, withd / "data", scratch)
    finally:
        for path in remotes:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)

    mo, mb = statistics.median(ours), statistics.median(bare)
    load = os.getloadavg()
    print(f"dataset: {len(paths):,} files, {total:,} B; load average {load[0]:.2f}")
    print("| figure | trainform | rsync / baseline | ratio | goal | met |")
    print("|---|---|---|---|---|---|")
    ratio = first / rsync_first
    print(
        f"| (a) first transfer | {first:.2f} s, sent {first_sent[0]:,} files "
        f"{first_sent[1]:,} B | rsync {rsync_first:.2f} s, {rsync_first_bytes:,} B "
        f"| {ratio:.2f}x | <= 1.2x | {'yes' if ratio <= 1.2 else 'no'} |"
    )
    print(
        f"| (b) code change only, data unchanged (median of {args.repeat}) | {mo:.2f} s "
        f"(best {min(ours):.2f}), sent {reuse_sent[0]:,} files {reuse_sent[1]:,} B "
        f"| same run without the dataset {mb:.2f} s (best {min(bare):.2f}) "
        f"| +{mo - mb:.2f} s | < +0.5 s | {'yes' if mo - mb < 0.5 else 'no'} |"
    )
    po, pb = statistics.median(plans), statistics.median(bare_plans)
    print(
        f"| (b') of which `plan`, nothing to do (median of {args.repeat}) | {po:.2f} s "
        f"| without the dataset {pb:.2f} s | +{po - pb:.2f} s | | |"
    )
    print(
        f"| (c) one file of {size:,} B rewritten | {changed:.2f} s, sent "
        f"{changed_sent[0]:,} files {changed_sent[1]:,} B | rsync {rsync_changed:.2f} s, "
        f"{rsync_changed_bytes:,} B | {changed_sent[1] / size:.3f}x the file "
        f"| < 1.1x | {'yes' if changed_sent[1] < 1.1 * size else 'no'} |"
    )


if __name__ == "__main__":
    main()
