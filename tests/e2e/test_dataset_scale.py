"""A dataset of 10,000 small files (1 KiB each, in 100 subfolders) read by one run on local
compute, through the real CLI: apply completes and the run sees every file under
TRAINFORM_INPUT_BIG; a plan afterwards has nothing to do; one rewritten file plans as
"1 file changed" and the apply that follows resubmits the run, which reads the new content.

The 5 GB figure (wall time, progress lines, peak memory of apply and plan) is measured by
bench/dataset_scale.py, not here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from helpers import CLI, ok

FOLDERS, PER_FOLDER, SIZE = 100, 100, 1024

COUNT = """\
import os
root = os.environ["TRAINFORM_INPUT_BIG"]
n = sum(len(files) for _, _, files in os.walk(root))
print("files:", n, flush=True)
print("first:", open(os.path.join(root, "d000", "f000.bin"), "rb").read(8).hex(), flush=True)
"""

CONFIG = """\
compute "local" {
  type = "local"
}
dataset "big" {
  source = "data"
}
run "count" {
  experiment = "scale"
  compute    = compute.local
  source_dir = "src"
  script     = "count.py"
  inputs     = { big = dataset.big }
}
"""


def write_dataset(root: Path) -> None:
    """FOLDERS x PER_FOLDER files of SIZE distinct bytes each (no two files alike, so the
    blob store holds 10,000 blobs)."""
    for d in range(FOLDERS):
        folder = root / f"d{d:03d}"
        folder.mkdir(parents=True)
        for f in range(PER_FOLDER):
            head = f"{d:03d}/{f:03d}".encode()
            (folder / f"f{f:03d}.bin").write_bytes(head + os.urandom(SIZE - len(head)))


def logged(out: str, prefix: str) -> str:
    found = re.search(rf"^run\.count\s*\| {re.escape(prefix)} (.*)$", out, re.M)
    assert found, f"no run.count | {prefix} in\n{out}"
    return found.group(1)


def test_ten_thousand_files_apply_plan_clean_and_one_change_plans_one_file(cli: CLI) -> None:
    write_dataset(cli.cwd / "data")
    cli.write("src/count.py", COUNT)
    cli.write("main.train.hcl", CONFIG)

    out = ok(cli("apply", "-auto-approve", timeout=300)).out
    assert "Apply complete!" in out, out
    assert logged(out, "files:") == str(FOLDERS * PER_FOLDER)
    assert logged(out, "first:").startswith(b"000/000".hex())
    shown = ok(cli("state", "show", "dataset.big")).out
    assert re.search(r"\bfiles\s*=\s*10000\b", shown), shown
    assert re.search(rf"\bbytes\s*=\s*{FOLDERS * PER_FOLDER * SIZE}\b", shown), shown

    ok(cli("plan", "-detailed-exitcode", timeout=300), 0)

    changed = cli.cwd / "data" / "d000" / "f000.bin"
    changed.write_bytes(b"000/000" + b"\xff" * (SIZE - 7))
    plan = ok(cli("plan", "-detailed-exitcode", timeout=300), 2).out
    assert "dataset.big changed: 1 file changed" in plan, plan
    assert "# run.count will be resubmitted: input big changed (from dataset.big)" in plan, plan

    out = ok(cli("apply", "-auto-approve", timeout=300)).out
    assert logged(out, "files:") == str(FOLDERS * PER_FOLDER)
    assert logged(out, "first:") == (b"000/000" + b"\xff").hex()
    ok(cli("plan", "-detailed-exitcode", timeout=300), 0)
