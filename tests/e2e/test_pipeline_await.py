"""Pipelines through the real CLI, on local compute: a run an earlier apply left running
(``-detach``) is awaited by the next apply before the runs that read its outputs start
(the generic awaited-work contract, across applies); ``input_mode = "link"`` reads a dataset
where it sits, read-only even for root."""

from __future__ import annotations

import os
import re

from helpers import CLI, ok
from test_pipelines import PREP, TRAIN, logged, pipeline, run_id, tree_bytes


def test_a_run_left_running_by_an_earlier_apply_is_awaited_before_its_readers(cli: CLI) -> None:
    pipeline(cli)
    ok(cli("apply", "-auto-approve"))
    first = run_id(cli, "run.train")
    # prep changes what it writes and now takes a while; it is left running.
    cli.write("src/prep/prep.py", PREP + "import time\ntime.sleep(3)\n")
    cli.write("data/f9.csv", "row 9\n")
    out = ok(cli("apply", "-auto-approve", "-target=run.prep", "-detach")).out
    assert "keeps running in the background" in out, out
    prep = run_id(cli, "run.prep")

    out = ok(cli("apply", "-auto-approve")).out
    assert "run.prep: Awaiting..." in out, out
    assert logged(out, "run.prep", "prep read") == "5 files"  # its log, followed to its end
    assert out.index("run.prep: Completed") < out.index("run.train: Resubmitting..."), out
    assert logged(out, "run.train", "train rows") == "5"  # read what prep wrote
    assert run_id(cli, "run.prep") == prep  # awaited, not resubmitted
    assert run_id(cli, "run.train") != first
    assert "Resources: 0 added, 1 changed" in out, out  # train; prep was not this apply's
    plan = ok(cli("plan", "-detailed-exitcode")).out
    assert "No changes." in plan, plan
    # runs show names what the run read and what it produced, by content
    shown = ok(cli("runs", "show", "run.train")).out
    assert re.search(r"^    features: [0-9a-f]{16} \(run\.prep\)$", shown, re.M), shown
    assert re.search(r"^    model: [0-9a-f]{16}, 1 file\(s\), 5 B$", shown, re.M), shown


LINKED = """\
import os
raw = os.environ["TRAINFORM_INPUT_RAW"]
print("linked at", raw, flush=True)
print("linked read", len(os.listdir(raw)), "files", flush=True)
try:
    open(os.path.join(raw, "f1.csv"), "a").write("changed")
    print("linked wrote", flush=True)
except OSError as exc:
    print("linked refused", exc.strerror, flush=True)
"""


def test_a_linked_dataset_is_read_where_it_sits_and_cannot_be_written(cli: CLI) -> None:
    pipeline(cli)
    cli.write("src/linked/linked.py", LINKED)
    cli.write(
        "main.train.hcl",
        (cli.cwd / "main.train.hcl").read_text()
        + 'run "linked" {\n  experiment = "pipes"\n  compute = compute.local\n'
        '  source_dir = "src/linked"\n  script = "linked.py"\n'
        '  inputs = { raw = dataset.raw }\n  input_mode = "link"\n}\n',
    )
    before = tree_bytes(cli.cwd / "data")
    out = ok(cli("apply", "-auto-approve", "-target=run.linked")).out
    assert logged(out, "run.linked", "linked read") == "4 files", out
    if os.geteuid() == 0:  # mounted read-only in the launcher's own mount namespace
        assert logged(out, "run.linked", "linked at").endswith("/inputs/raw"), out
        assert logged(out, "run.linked", "linked refused") == "Read-only file system", out
    assert tree_bytes(cli.cwd / "data") == before  # the dataset itself is untouched
    # nothing of the dataset went into the workspace's blob store
    blobs = cli.cwd / ".trainform" / "workspaces" / "default" / "snapshots" / "blobs"
    stored = {p.read_bytes() for p in blobs.rglob("*") if p.is_file()}
    assert not stored & set(before.values())


def test_link_mode_places_another_runs_output_from_the_store(cli: CLI) -> None:
    """input_mode = "link" links datasets; another run's output is placed from the
    workspace's store, as when copied."""
    pipeline(cli)
    cli.write("src/train/train.py", TRAIN)
    cli.write(
        "main.train.hcl",
        (cli.cwd / "main.train.hcl")
        .read_text()
        .replace(
            '  outputs = { model = "outputs/model.txt" }\n',
            '  outputs = { model = "outputs/model.txt" }\n  input_mode = "link"\n',
        ),
    )
    out = ok(cli("apply", "-auto-approve")).out
    assert logged(out, "run.train", "train rows") == "4", out


def test_link_mode_is_refused_on_a_compute_that_is_not_this_machine(cli: CLI) -> None:
    pipeline(cli)
    cli.write(
        "main.train.hcl",
        (cli.cwd / "main.train.hcl")
        .read_text()
        .replace("  input_args = true\n", '  input_mode = "link"\n')
        + 'compute "far" {\n  type = "ssh"\n  address = "127.0.0.1"\n  username = "nobody"\n'
        '  private_key_file = "key"\n}\n',
    )
    cli.write("key", "not read\n")
    cli.write(
        "main.train.hcl",
        (cli.cwd / "main.train.hcl")
        .read_text()
        .replace(
            'run "prep" {\n  experiment = "pipes"\n  compute    = compute.local',
            'run "prep" {\n  experiment = "pipes"\n  compute    = compute.far',
        ),
    )
    done = cli("validate")
    assert done.code == 1, done.all
    assert "must run on this machine" in done.all and "main.train.hcl:" in done.all, done.all


SWEEP = """\
sweep "tune" {
  experiment = "pipes"
  sampling {
    algorithm = "grid"
  }
  parameter "lr" {
    distribution = "choice"
    values       = [0.1, 0.2]
  }
  objective {
    metric = "rows"
    goal   = "maximize"
  }
  trial {
    compute    = compute.local
    source_dir = "src/tune"
    script     = "tune.py"
    inputs     = { features = run.prep.outputs["features"] }
  }
}
"""

TUNE = """\
import json, os
p = os.environ["TRAINFORM_INPUT_FEATURES"]
n = open(os.path.join(p, "all.txt")).read().count("row")
with open(os.environ["TRAINFORM_METRICS_FILE"], "a") as f:
    f.write(json.dumps({"name": "rows", "value": n, "step": 0}) + "\\n")
"""


def test_a_sweep_whose_inputs_come_out_unchanged_is_reused(cli: CLI) -> None:
    pipeline(cli, more=SWEEP)
    cli.write("src/tune/tune.py", TUNE)
    ok(cli("apply", "-auto-approve"))
    cli.write("src/prep/prep.py", PREP + "# a comment\n")
    plan = ok(cli("plan")).out
    assert (
        "# sweep.tune may be resubmitted, depending on run.prep's outputs "
        "(decided by apply once they are known)"
    ) in plan, plan
    out = ok(cli("apply", "-auto-approve")).out
    assert "sweep.tune: Reused" in out and "run.train: Reused" in out, out
    cli.write("data/f9.csv", "row 9\n")
    out = ok(cli("apply", "-auto-approve")).out
    assert "sweep.tune: Reused" not in out and "best rows 5" in out, out
