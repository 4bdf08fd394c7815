"""`trainform runs export --mlflow URI` through the real CLI, into a real `mlflow server`
(tests/mlflow_server.py), read back with MLflow's own Python client: a run's params, metric
points with their steps, tags and outputs; a second export that adds nothing; a sweep's trials
with their hyperparameters; what an unchanged MLflow script logged; a server that is down (a clear error naming the URI, without its
password) and a retry after it, and an export cut off midway, neither leaving duplicates;
credentials through a reverse proxy that demands them; a server that keeps artifacts itself;
continuous export through the workspace block, also to a server that is down; and the
README's commands, verbatim.

Each test exports into an experiment of its own, so they share one server.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import CLI, README, applied_quickstart, block_after, failed, ok
from mlflow_envs import interpreter
from mlflow_server import AuthProxy, TrackingServer, free_port

TRAIN = """\
import os
from pathlib import Path
from trainform.tracking import log_metric, log_param

log_param("lr", 0.1)
log_param("optimizer", "adam")
for i in range(120):  # more params than one MLflow call takes (100)
    log_param(f"layer_{i}", i)
for step in range(2500):  # more points than one MLflow call takes (1000)
    log_metric("loss", 1.0 / (step + 1), step=step)
log_metric("acc/top 1", 0.5, step=7)
log_metric("bad?name", 1.0)
log_metric("diverged", float("nan"), step=0)
log_metric("diverged", float("-inf"), step=1)
out = Path(os.environ["TRAINFORM_OUTPUT_DIR"])
(out / "model.txt").write_text("weights")
(out / "sub dir").mkdir()
(out / "sub dir" / "notes 1.txt").write_text("notes")
(out / "hash#.txt").write_text("refused")
(out / "link").symlink_to("model.txt")
"""

SMALL = """\
from trainform.tracking import log_metric, log_param
log_param("lr", 0.5)
for step in range(3):
    log_metric("loss", 1.0 / (step + 1), step=step)
"""


def config(experiment: str, script: str = "train.py", workspace: str = "") -> str:
    """A local run of ``script`` in ``experiment``; with ``workspace``, that workspace block
    records it."""
    ws = f'workspace "main" {{\n{workspace}}}\n\n' if workspace else ""
    return (
        f'{ws}compute "local" {{\n  type = "local"\n}}\n\n'
        'run "train" {\n'
        f'  experiment = "{experiment}"\n'
        "  compute    = compute.local\n"
        + ("  workspace  = workspace.main\n" if workspace else "")
        + '  source_dir = "src"\n'
        f'  script     = "{script}"\n'
        "}\n"
    )


def experiment_name() -> str:
    return f"export-{uuid.uuid4().hex[:8]}"


def applied(cli: CLI, experiment: str, script: str = TRAIN, workspace: str = "") -> dict:
    """The run of a configuration whose script is ``script``, applied; its history row."""
    cli.write("src/train.py", script)
    cli.write("main.train.hcl", config(experiment, workspace=workspace))
    ok(cli("apply", "-auto-approve"))
    return json.loads(ok(cli("runs", "show", "run.train", "--json")).out)


def exported(cli: CLI, *args: str, **env: str) -> list[dict]:
    return json.loads(ok(cli("runs", "export", *args, "--json", **env)).out)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_run_is_exported_whole_and_a_second_export_adds_nothing(
    cli: CLI, mlflow_server: TrackingServer
) -> None:
    experiment = experiment_name()
    run = applied(cli, experiment)
    result = ok(cli("runs", "export", "--mlflow", mlflow_server.uri, "run.train"))
    assert f"{run['id']}: exported (" in result.out, result.out
    assert "122 params, 2503 metric points, 2 output file(s)" in result.out, result.out
    assert "metric 'bad?name' not exported: MLflow takes only letters" in result.out
    assert "output 'link' not exported: not a regular file" in result.out
    assert "output 'hash#.txt' not exported: MLflow takes no '#' in paths" in result.out
    assert "1 run(s) exported to " + mlflow_server.uri in result.out

    [got] = mlflow_server.read_back(experiment)
    assert got["lifecycle"] == "active" and got["status"] == "FINISHED", got
    assert got["params"]["lr"] == "0.1" and got["params"]["optimizer"] == "adam"
    assert {f"layer_{i}": str(i) for i in range(120)}.items() <= got["params"].items()
    assert len(got["params"]) == 122
    loss = got["metrics"]["loss"]
    assert [step for step, _, _ in loss] == list(range(2500))
    assert [value for _, value, _ in loss] == pytest.approx([1 / (s + 1) for s in range(2500)])
    assert [[s, v] for s, v, _ in got["metrics"]["acc/top 1"]] == [[7, 0.5]]
    assert "bad?name" not in got["metrics"]
    # Non-finite points arrive as what they were (the state keeps what they were).
    diverged = got["metrics"]["diverged"]
    assert [s for s, _, _ in diverged] == [0, 1] and math.isnan(diverged[0][1])
    assert diverged[1][1] == -sys.float_info.max  # how MLflow's SQL store keeps -inf
    assert got["start"] <= loss[0][2] <= loss[-1][2] <= got["end"]

    tags = got["tags"]
    record = json.loads(ok(cli("runs", "show", run["id"], "--json")).out)
    assert tags["trainform.run_id"] == run["id"]
    assert tags["mlflow.runName"] == run["id"]
    assert tags["trainform.address"] == "run.train"
    assert tags["trainform.fingerprint"] == record["fingerprint"]
    assert tags["trainform.snapshot_id"] == record["snapshot_id"]
    assert tags["trainform.compute"] == "compute.local"
    assert tags["trainform.exported"] == "complete"
    assert "trainform.sweep" not in tags
    assert got["artifacts"] == {"model.txt": sha("weights"), "sub dir/notes 1.txt": sha("notes")}

    again = ok(cli("runs", "export", "--mlflow", mlflow_server.uri, run["id"]))
    assert f"{run['id']}: already exported (" in again.out, again.out
    assert f"/#/experiments/{got['experiment_id']}/runs/{got['id']}" in again.out
    [same] = mlflow_server.read_back(experiment)
    assert same["id"] == got["id"] and len(same["metrics"]["loss"]) == 2500


def test_a_sweeps_trials_are_exported_with_their_hyperparameters_as_each_ends(
    cli: CLI, mlflow_server: TrackingServer
) -> None:
    """Continuous export from the sweep controller, then `runs export --sweep`."""
    experiment = experiment_name()
    cli.write(
        "src/train.py",
        "import argparse\nfrom trainform.tracking import log_metric\n"
        "p = argparse.ArgumentParser()\np.add_argument('--lr', type=float)\n"
        "args, _ = p.parse_known_args()\n"
        "for epoch in (1, 2):\n    log_metric('accuracy', args.lr * epoch, step=epoch)\n",
    )
    cli.write(
        "main.train.hcl",
        f'workspace "main" {{\n  mlflow_tracking_uri = "{mlflow_server.uri}"\n}}\n\n'
        'compute "local" {\n  type = "local"\n  max_concurrent_runs = 2\n}\n\n'
        'sweep "tune" {\n'
        f'  experiment = "{experiment}"\n'
        "  workspace  = workspace.main\n"
        "  trial {\n"
        "    compute    = compute.local\n"
        '    source_dir = "src"\n'
        '    script     = "train.py"\n'
        '    arguments  = ["--lr", param.lr]\n'
        "  }\n"
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n    values = [0.01, 0.03]\n  }\n'
        '  objective {\n    metric = "accuracy"\n    goal   = "maximize"\n  }\n'
        "  limits {\n    max_total_runs = 2\n    max_concurrent_runs = 2\n  }\n"
        "}\n",
    )
    ok(cli("apply", "-auto-approve", timeout=180))
    sweep = json.loads(ok(cli("sweeps", "show", "tune", "--json")).out)
    trials = {t["run_id"]: t["params"]["lr"] for t in sweep["record"]["trials"]}
    assert len(trials) == 2, trials

    got = mlflow_server.active(experiment)  # exported by the controller as each trial ended
    assert sorted(r["tags"]["trainform.run_id"] for r in got) == sorted(trials)
    for run in got:
        run_id = run["tags"]["trainform.run_id"]
        assert run["tags"]["trainform.sweep"] == sweep["id"]
        assert run["tags"]["trainform.address"].startswith("sweep.tune[")
        assert run["params"]["lr"] == str(trials[run_id])
        assert [[s, v] for s, v, _ in run["metrics"]["accuracy"]] == [
            [1, pytest.approx(trials[run_id])],
            [2, pytest.approx(2 * trials[run_id])],
        ]

    done = exported(cli, "--mlflow", mlflow_server.uri, "--sweep", "tune")
    assert sorted(d["run_id"] for d in done) == sorted(trials)
    assert {d["action"] for d in done} == {"unchanged"}, done
    assert len(mlflow_server.active(experiment)) == 2


def test_what_an_mlflow_script_logged_is_exported_with_the_run(
    cli: CLI, mlflow_server: TrackingServer
) -> None:
    """An unchanged MLflow script, captured by trainform (its params, tags and metrics),
    then exported: the tags it set travel with the run."""
    experiment = experiment_name()
    cli.write(
        "src/train.py",
        "import mlflow\n"
        "mlflow.log_param('alpha', 0.5)\n"
        "mlflow.set_tag('stage', 'dev')\n"
        "for step in range(3):\n"
        "    mlflow.log_metric('rmse', 1.0 / (step + 1), step=step)\n",
    )
    cli.write(
        "main.train.hcl",
        f'environment "ml" {{\n  python       = "{interpreter("mlflow3")}"\n'
        "  user_managed = true\n}\n\n"
        + config(experiment).replace(
            "  compute    = compute.local\n",
            "  compute    = compute.local\n  environment = environment.ml\n",
        ),
    )
    ok(cli("apply", "-auto-approve", timeout=180))
    done = exported(cli, "--mlflow", mlflow_server.uri, "run.train")
    assert [d["action"] for d in done] == ["exported"], done
    [got] = mlflow_server.active(experiment)
    assert got["params"]["alpha"] == "0.5"
    assert got["tags"]["stage"] == "dev"
    assert [[s, v] for s, v, _ in got["metrics"]["rmse"]] == [
        [0, 1.0],
        [1, pytest.approx(0.5)],
        [2, pytest.approx(1 / 3)],
    ]
    assert got["tags"]["mlflow.runName"] == done[0]["run_id"]


def test_a_server_that_is_down_is_named_and_a_retry_leaves_no_duplicates(
    cli: CLI, mlflow_server: TrackingServer
) -> None:
    experiment = experiment_name()
    run = applied(cli, experiment, SMALL)
    down = f"http://127.0.0.1:{free_port()}"
    with_password = down.replace("//", "//alice:Sekr1t-pw@")
    result = failed(
        cli("runs", "export", "--mlflow", with_password, "run.train"),
        f"MLflow server {down}: cannot be reached (Connection refused)",
    )
    assert "Sekr1t-pw" not in result.all and "alice" not in result.all

    # An export cut off after creating its MLflow run and sending some points.
    experiment_id = mlflow_server.rest("experiments/create", {"name": experiment})["experiment_id"]
    partial = mlflow_server.rest(
        "runs/create",
        {
            "experiment_id": experiment_id,
            "tags": [{"key": "trainform.run_id", "value": run["id"]}],
        },
    )["run"]["info"]["run_id"]
    mlflow_server.rest(
        "runs/log-batch",
        {
            "run_id": partial,
            "metrics": [{"key": "loss", "value": 1.0, "timestamp": 0, "step": 0}],
        },
    )

    again = ok(cli("runs", "export", "--mlflow", mlflow_server.uri, "run.train"))
    assert "exported again, replacing an export that was cut off" in again.out, again.out
    ok(cli("runs", "export", "--mlflow", mlflow_server.uri, "run.train"))

    runs = {r["id"]: r for r in mlflow_server.read_back(experiment)}
    assert runs[partial]["lifecycle"] == "deleted"
    [kept] = [r for r in runs.values() if r["lifecycle"] == "active"]
    assert [[s, v] for s, v, _ in kept["metrics"]["loss"]] == [
        [0, 1.0],
        [1, pytest.approx(0.5)],
        [2, pytest.approx(1 / 3)],
    ]


def test_credentials_reach_a_server_behind_an_authenticating_proxy_and_are_never_shown(
    cli: CLI, mlflow_server: TrackingServer
) -> None:
    experiment = experiment_name()
    applied(cli, experiment, SMALL)
    bearer = AuthProxy(mlflow_server.uri, "Bearer tok-Secret-123")
    basic = AuthProxy(mlflow_server.uri, "Basic Ym9iOnB3LVNlY3JldC00NTY=")  # bob:pw-Secret-456
    try:
        refused = failed(
            cli("runs", "export", "--mlflow", bearer.uri, "run.train"),
            f"MLflow server {bearer.uri}: /api/2.0/mlflow/experiments/get-by-name refused "
            "the credentials (HTTP 401); set MLFLOW_TRACKING_USERNAME",
        )
        wrong = failed(
            cli(
                "runs",
                "export",
                "--mlflow",
                bearer.uri,
                "run.train",
                MLFLOW_TRACKING_TOKEN="tok-Wrong-789",
            ),
            "(HTTP 401)",
        )
        assert "tok-Wrong-789" not in wrong.all
        done = exported(
            cli, "--mlflow", bearer.uri, "run.train", MLFLOW_TRACKING_TOKEN="tok-Secret-123"
        )
        assert [d["action"] for d in done] == ["exported"]
        assert "Bearer tok-Secret-123" in bearer.seen

        in_uri = basic.uri.replace("//", "//bob:pw-Secret-456@")
        shown = ok(cli("runs", "export", "--mlflow", in_uri, "run.train"))
        assert "already exported" in shown.out and "pw-Secret-456" not in shown.all
        from_env = exported(
            cli,
            "--mlflow",
            basic.uri,
            "run.train",
            MLFLOW_TRACKING_USERNAME="bob",
            MLFLOW_TRACKING_PASSWORD="pw-Secret-456",
        )
        assert [d["action"] for d in from_env] == ["unchanged"]
        assert "tok-Secret-123" not in refused.all
    finally:
        bearer.close()
        basic.close()
    assert len(mlflow_server.active(experiment)) == 1


def test_a_server_that_keeps_artifacts_itself_gets_everything_but_the_outputs(
    cli: CLI, mlflow_server: TrackingServer, tmp_path: Path
) -> None:
    experiment = experiment_name()
    # An experiment whose artifacts live in a folder the server writes, not behind its proxy.
    mlflow_server.rest(
        "experiments/create",
        {"name": experiment, "artifact_location": str(tmp_path / "elsewhere")},
    )
    applied(cli, experiment)
    result = ok(cli("runs", "export", "--mlflow", mlflow_server.uri, "run.train"))
    assert "outputs not exported: the server stores artifacts at" in result.out, result.out
    assert "0 output file(s)" in result.out
    [got] = mlflow_server.active(experiment)
    assert got["tags"]["trainform.exported"] == "complete"
    assert len(got["metrics"]["loss"]) == 2500
    assert not (tmp_path / "elsewhere").exists()


def test_continuous_export_mirrors_each_run_as_it_finishes(
    cli: CLI, mlflow_server: TrackingServer
) -> None:
    experiment = experiment_name()
    workspace = f'  mlflow_tracking_uri = "{mlflow_server.uri}"\n'
    run = applied(cli, experiment, SMALL, workspace=workspace)
    [got] = mlflow_server.active(experiment)
    assert got["tags"]["trainform.run_id"] == run["id"]
    assert got["tags"]["trainform.exported"] == "complete"
    assert got["params"] == {"lr": "0.5"}
    assert len(got["metrics"]["loss"]) == 3
    done = exported(cli, "--mlflow", mlflow_server.uri, "--experiment", experiment)
    assert [d["action"] for d in done] == ["unchanged"]


def test_continuous_export_to_a_server_that_is_down_warns_and_runs_export_catches_up(
    cli: CLI, mlflow_server: TrackingServer
) -> None:
    experiment = experiment_name()
    down = f"http://127.0.0.1:{free_port()}"
    cli.write("src/train.py", SMALL)
    cli.write("main.train.hcl", config(experiment, workspace=f'  mlflow_tracking_uri = "{down}"\n'))
    result = ok(cli("apply", "-auto-approve"))
    assert "Apply complete!" in result.out
    assert (
        "run.train: warning: run train-" in result.out
        and f"was not exported to MLflow (MLflow server {down}: cannot be reached" in result.out
        and f"`trainform runs export --mlflow {down} train-" in result.out
    ), result.out
    [run] = json.loads(ok(cli("runs", "list", "--json")).out)
    assert run["status"] == "completed"
    assert mlflow_server.active(experiment) == []

    done = exported(cli, "--mlflow", mlflow_server.uri, run["id"])
    assert [d["action"] for d in done] == ["exported"]
    assert len(mlflow_server.active(experiment)) == 1


def test_credentials_in_the_workspaces_uri_are_refused_at_plan_time(cli: CLI) -> None:
    cli.write("src/train.py", SMALL)
    cli.write(
        "main.train.hcl",
        config("x", workspace='  mlflow_tracking_uri = "http://bob:pw-Secret@mlflow:5000"\n'),
    )
    result = failed(
        cli("plan"),
        "workspace.main: mlflow_tracking_uri: 'http://mlflow:5000': put no credentials in the "
        "URI (they would be written to state); set MLFLOW_TRACKING_USERNAME",
    )
    assert "pw-Secret" not in result.all
    cli.write("main.train.hcl", config("x", workspace='  mlflow_tracking_uri = "sqlite:///m.db"\n'))
    failed(cli("plan"), "is not an MLflow tracking server's URI")


def test_export_refuses_what_it_cannot_do(cli: CLI) -> None:
    cli.write("src/train.py", SMALL)
    cli.write("main.train.hcl", config("x"))
    failed(
        cli("runs", "export", "--mlflow", "file:///tmp/mlruns"),
        "'file:///tmp/mlruns' is not an MLflow tracking server's URI",
    )
    failed(
        cli("runs", "export", "--mlflow", "http://127.0.0.1:1", "a", "--experiment", "x"),
        "give runs, --experiment or --sweep, not several of them",
    )


# -- the README -------------------------------------------------------------------------------


def test_the_readme_workspace_block_is_valid(cli: CLI) -> None:
    block = block_after("**Continuous export.**", "hcl")
    cli.write("main.train.hcl", block)
    assert "Success!" in ok(cli("validate")).out


def test_the_readme_export_commands_verbatim(tmp_path: Path, mlflow_server: TrackingServer) -> None:
    """The README's `runs export` commands, after the quick start (init and apply), with
    MLFLOW_TRACKING_URI naming the test's server."""
    cli = applied_quickstart(tmp_path)
    env = cli.env
    run_id = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)["id"]
    script = block_after("### Exporting runs to MLflow", "sh")
    proc = subprocess.run(
        ["sh", "-c", "set -e\n" + script],
        cwd=tmp_path,
        env={**env, "MLFLOW_TRACKING_URI": mlflow_server.uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"{run_id}: exported (" in out and f"{run_id}: already exported (" in out, out
    assert "; 4 params, 20\nmetric points, 1 output file(s)`" in README.read_text()
    assert "; 4 params, 20 metric points, 1 output file(s)" in out, out  # as the README says
    mine = [
        r for r in mlflow_server.active("quickstart") if r["tags"]["trainform.run_id"] == run_id
    ]
    assert len(mine) == 1, mine
    assert mine[0]["params"] and mine[0]["metrics"]["loss"], mine[0]


def test_a_run_recorded_by_runs_wait_warns_when_its_continuous_export_fails(cli: CLI) -> None:
    """The runs commands that record a run's end (wait, cancel, logs --follow, metrics
    --follow) say so too when its continuous export failed, as apply does."""
    down = f"http://127.0.0.1:{free_port()}"
    cli.write("src/train.py", SMALL)
    hcl = config(experiment_name(), workspace=f'  mlflow_tracking_uri = "{down}"\n')
    cli.write(
        "main.train.hcl",
        hcl.replace('  source_dir = "src"\n', '  source_dir = "src"\n  wait       = false\n'),
    )
    ok(cli("apply", "-auto-approve"))
    waited = ok(cli("runs", "wait", "run.train"))
    assert "run.train: warning: run train-" in waited.err, waited.all
    assert f"was not exported to MLflow (MLflow server {down}: cannot be reached" in waited.err
