"""Datasets and run inputs on `compute { type = "slurm" }` through the real CLI on the real
two-node Slurm test cluster (tests/slurm.py, a shared workdir): `prep` reads `dataset.raw`
and writes the named output `features`; `train`, on the same compute, reads
`run.prep.outputs["features"]`. Covered: the data and prep's output reach the jobs; a change
to prep's code that leaves its output byte-identical resubmits prep but reuses train."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import CLI, base_env, ok
from slurm import SlurmCluster

DATA = {f"f{i}.csv": "".join(f"row,{i},{j}\n" for j in range(200)) for i in (1, 2, 3)}

PREP = """\
import os
d = os.environ["TRAINFORM_INPUT_RAW"]
os.makedirs("outputs/features", exist_ok=True)
rows = sorted(open(os.path.join(d, f)).read() for f in sorted(os.listdir(d)))
open("outputs/features/all.txt", "w").write("".join(rows))
print("prep read", len(rows), "files in job", os.environ["SLURM_JOB_ID"])
"""

TRAIN = """\
import os
p = os.environ["TRAINFORM_INPUT_FEATURES"]
rows = open(os.path.join(p, "all.txt")).read()
print("train sees", sorted(os.listdir(p)), rows.count("row"), "rows in job",
      os.environ["SLURM_JOB_ID"])
"""


def config(tmp_path: Path, cluster: SlurmCluster) -> CLI:
    folder = tmp_path / "config"
    folder.mkdir()
    cli = CLI(folder, {**base_env(), "SLURM_CONF": str(cluster.conf)})
    for name, text in DATA.items():
        cli.write(f"data/{name}", text)
    cli.write("src/prep/prep.py", PREP)
    cli.write("src/train/train.py", TRAIN)
    cli.write(
        "main.train.hcl",
        'compute "hpc" {\n'
        '  type      = "slurm"\n'
        '  partition = "debug"\n'
        f'  workdir   = "{tmp_path / "shared"}"\n'
        "}\n"
        'dataset "raw" {\n  source = "data"\n}\n'
        'run "prep" {\n'
        '  experiment = "hpc"\n'
        "  compute    = compute.hpc\n"
        '  source_dir = "src/prep"\n'
        '  script     = "prep.py"\n'
        "  inputs     = { raw = dataset.raw }\n"
        '  outputs    = { features = "outputs/features" }\n'
        "}\n"
        'run "train" {\n'
        '  experiment = "hpc"\n'
        "  compute    = compute.hpc\n"
        '  source_dir = "src/train"\n'
        '  script     = "train.py"\n'
        '  inputs     = { features = run.prep.outputs["features"] }\n'
        "}\n",
    )
    return cli


def latest_ids(cli: CLI) -> dict[str, str]:
    ids: dict[str, str] = {}
    for row in json.loads(ok(cli("runs", "list", "--json")).out):
        ids.setdefault(row["address"], row["id"])
    return ids


def test_a_dataset_and_an_upstream_output_flow_through_slurm_jobs_and_reuse_holds(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = config(tmp_path, slurm_cluster)
    first = ok(cli("apply", "-auto-approve", timeout=300))
    for ref in ("run.prep", "run.train"):
        assert f"{ref}: Completed" in first.out, first.all
    prep_log = ok(cli("runs", "logs", "run.prep")).out
    assert "prep read 3 files in job " in prep_log, prep_log
    train_log = ok(cli("runs", "logs", "run.train")).out
    assert "train sees ['all.txt'] 600 rows in job " in train_log, train_log
    ids = latest_ids(cli)
    ok(cli("plan", "-detailed-exitcode"), 0)

    # prep's code changes, what it writes does not: train is reused, not resubmitted.
    cli.write("src/prep/prep.py", PREP + "# a comment changes nothing it writes\n")
    plan = ok(cli("plan", "-detailed-exitcode"), 2).out
    assert "# run.prep will be resubmitted" in plan, plan
    assert "# run.train may be resubmitted, depending on run.prep's outputs" in plan, plan
    second = ok(cli("apply", "-auto-approve", timeout=300))
    assert "run.prep: Completed" in second.out, second.all
    assert "run.train: Reused" in second.out, second.all
    now = latest_ids(cli)
    assert now["run.prep"] != ids["run.prep"], (ids, now)
    assert now["run.train"] == ids["run.train"], (ids, now)
    ok(cli("plan", "-detailed-exitcode"), 0)
