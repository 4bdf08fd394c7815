"""A run's secrets through the real CLI and real local runs: ``env`` and environment variable
values never rest in the run folder or the workspace (the launcher takes them from a 0600 file
it deletes), fingerprints hide sensitive inputs behind the state's key, and a run inherits
none of the variable values given to trainform (``env_passthrough`` narrows the rest)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers import CLI, base_env, failed, ok

SECRET = "hunter2-run-secret-51c7"

SCRIPT = """\
import hashlib, json, os
from pathlib import Path

run_dir = Path(os.environ["TRAINFORM_METRICS_FILE"]).parent
secret = os.environ.get("TOKEN", "").encode()
# what of the secret is on disk while the run runs, next to it
holding = [
    str(p.relative_to(run_dir))
    for p in run_dir.rglob("*")
    if p.is_file() and p.name != "output.log" and secret and secret in p.read_bytes()
]
with open(f"/proc/{os.getppid()}/environ", "rb") as f:
    parent = [e.split(b"=", 1)[0].decode() for e in f.read().split(b"\\0") if e]
report = {
    "token": hashlib.sha256(secret).hexdigest(),
    "key": hashlib.sha256(os.environ.get("KEY", "").encode()).hexdigest(),
    "names": sorted(os.environ),
    "parent_names": parent,
    "holding": holding,
    "secret_dir": (run_dir / "secret").exists(),
}
out = Path(os.environ["TRAINFORM_OUTPUT_DIR"])
(out / "report.json").write_text(json.dumps(report))
"""

CONFIG = """\
variable "token" {{
  type      = string
  sensitive = true
}}

compute "box" {{
  type = "local"
}}

environment "py" {{
  variables = {{ KEY = var.token, PLAIN = "visible" }}
}}

run "secret" {{
  experiment  = "tests"
  compute     = compute.box
  environment = environment.py
  source_dir  = "src"
  script      = "report.py"
  env         = {{ TOKEN = var.token, MODE = "fast" }}
}}

run "plain" {{
  experiment = "tests"
  compute    = compute.box
  source_dir = "src"
  script     = "report.py"
  env        = {{ MODE = "fast" }}
{extra}}}
"""


def setup(cli: CLI, extra: str = "") -> None:
    cli.write("main.train.hcl", CONFIG.format(extra=extra))
    cli.write("src/report.py", SCRIPT)


def run_show(cli: CLI, address: str) -> dict:
    return json.loads(ok(cli("runs", "show", address, "--json")).out)


def report(cli: CLI, address: str) -> dict:
    return json.loads((Path(run_show(cli, address)["outputs_path"]) / "report.json").read_text())


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_run_secrets_never_rest_on_disk(cli):
    setup(cli)
    ok(cli("apply", "-auto-approve", TRAINFORM_VAR_token=SECRET))
    seen = report(cli, "run.secret")
    # the run got its values ...
    assert seen["token"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert seen["key"] == hashlib.sha256(SECRET.encode()).hexdigest()
    # ... yet while it ran no file beside it held them, and the launcher had deleted its copy
    assert seen["holding"] == [] and seen["secret_dir"] is False, seen
    # and afterwards neither the run folder nor the workspace does
    assert files_holding(cli.cwd / ".trainform", SECRET.encode()) == []
    run_dir = cli.cwd / ".trainform" / "local" / "runs" / run_show(cli, "run.secret")["id"]
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["secrets"] == {"env": ["MODE", "TOKEN"], "variables": ["KEY", "PLAIN"]}
    assert spec["env"] == {} and spec["environment"]["variables"] == {}
    assert not (run_dir / "secret").exists()
    collected = Path(run_show(cli, "run.secret")["outputs_path"]).parent / "spec.json"
    assert SECRET.encode() not in collected.read_bytes()


def test_fingerprints_hide_sensitive_inputs_behind_the_state_key(tmp_path):
    """Two states with the same configuration, source and secret: a run without sensitive
    inputs fingerprints the same in both (as it always did), one with a sensitive env value
    differently (a plain hash would be the same everywhere, so anyone holding a plan or a state
    could check a guessed secret offline). Within one state, an equal secret is up to date and
    a changed one resubmits."""
    results = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        cli = CLI(folder, base_env())
        setup(cli)
        ok(cli("apply", "-auto-approve", TRAINFORM_VAR_token=SECRET))
        results.append(
            (run_show(cli, "run.plain")["fingerprint"], run_show(cli, "run.secret")["fingerprint"])
        )
        plan = ok(cli("plan", "-detailed-exitcode", TRAINFORM_VAR_token=SECRET), 0)
        assert "No changes" in plan.out
        shown = ok(cli("plan", "--json", TRAINFORM_VAR_token=SECRET)).out
        assert SECRET not in shown
    (plain_one, secret_one), (plain_two, secret_two) = results
    assert plain_one == plain_two
    assert secret_one != secret_two

    changed = ok(cli("plan", "-detailed-exitcode", TRAINFORM_VAR_token=SECRET + "-new"), 2)
    assert "run.secret" in changed.out and "run.plain" not in changed.out, changed.out
    assert SECRET not in changed.all


INHERITED = {
    "TRAINFORM_VAR_token": SECRET,
    "TRAINFORM_VAR_other_password": "pw-of-another-compute",
    "TF_VAR_legacy": "tf-value",
    "KEEP_ME": "1",
    "EXACT": "1",
    "EXACTLY_NOT": "1",
    "DROP_ME": "1",
}


def test_runs_inherit_no_variable_values(cli):
    setup(cli)
    ok(cli("apply", "-auto-approve", **INHERITED))
    for address in ("run.secret", "run.plain"):
        seen = report(cli, address)
        names = set(seen["names"])
        assert not {n for n in names if n.startswith(("TRAINFORM_VAR_", "TF_VAR_"))}, names
        # trainform's own variables are the ones the launcher sets for the run
        own = {n for n in names if n.startswith("TRAINFORM_")}
        assert own <= {
            "TRAINFORM_RUN_ID",
            "TRAINFORM_EXPERIMENT",
            "TRAINFORM_OUTPUT_DIR",
            "TRAINFORM_METRICS_FILE",
            "TRAINFORM_LAUNCH_ID",
        }, own
        # nor can the run read them in its launcher's environment
        parent = set(seen["parent_names"])
        assert not {n for n in parent if n.startswith(("TRAINFORM_VAR_", "TF_VAR_"))}, parent
        # the rest is inherited, as before
        assert {"PATH", "MODE", "KEEP_ME", "EXACT", "EXACTLY_NOT", "DROP_ME"} <= names


def test_env_passthrough_narrows_what_a_run_inherits(cli):
    setup(cli, extra='  env_passthrough = ["KEEP_*", "EXACT"]\n')
    ok(cli("apply", "-auto-approve", **INHERITED))
    everything = set(report(cli, "run.secret")["names"])
    assert {"KEEP_ME", "EXACT", "EXACTLY_NOT", "DROP_ME"} <= everything
    narrowed = set(report(cli, "run.plain")["names"])
    assert {"KEEP_ME", "EXACT", "PATH", "HOME", "MODE", "TRAINFORM_RUN_ID"} <= narrowed
    assert not {"EXACTLY_NOT", "DROP_ME", "TRAINFORM_VAR_token"} & narrowed


def test_env_passthrough_is_checked_at_plan_time(cli):
    setup(cli, extra='  env_passthrough = ["GOOD_*", "bad-name", "A*B"]\n')
    result = failed(cli("plan", TRAINFORM_VAR_token=SECRET), "env_passthrough")
    assert "'bad-name'" in result.all and "'A*B'" in result.all
    assert "GOOD_*" not in result.all
