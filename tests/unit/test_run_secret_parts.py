"""The pieces that keep a run's secrets: the secret file the launcher reads and deletes (and
its remote and container forms), the fingerprint's keyed hashes of sensitive inputs and the
state's key, and what a run inherits of its launcher's environment."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from trainform.errors import ProviderError
from trainform.providers.base import SENSITIVE_PATHS, with_sensitive_paths
from trainform.runs import launcher, shipping
from trainform.runs.spec import fingerprint
from trainform.state.sqlite import SQLiteStateStore

SECRETS = {"env": {"TOKEN": "hunter2"}, "variables": {"KEY": "k-secret"}}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -------------------------------------------------------------------- the secret file


def test_the_spec_travels_without_values():
    spec = {"run_id": "r", "env": {"TOKEN": "hunter2"}, "environment": {"variables": {"K": "v"}}}
    public, secret = shipping.split_secrets(spec)
    assert "hunter2" not in json.dumps(public) and '"v"' not in json.dumps(public)
    assert public["secrets"] == {"env": ["TOKEN"], "variables": ["K"]}
    assert secret == {"env": {"TOKEN": "hunter2"}, "variables": {"K": "v"}}
    # nothing to hide: the spec is as it was
    bare = {"run_id": "r", "env": {}, "environment": {"variables": {}}}
    assert shipping.split_secrets(bare) == (bare, None)


def test_a_split_spec_is_put_back_together():
    spec = {
        "run_id": "r",
        "env": {"A": "1"},
        "environment": {"python": "3", "variables": {"K": "v"}},
    }
    public, secret = shipping.split_secrets(spec)
    assert secret is not None and shipping.with_secrets(public, secret) == spec
    assert shipping.with_secrets(public, {}) == public  # nothing to put back


def test_the_secret_file_is_private_and_gone_once_read(tmp_path):
    old = os.umask(0o022)
    try:
        shipping.store_secrets(tmp_path, SECRETS)
    finally:
        os.umask(old)
    assert mode(tmp_path / "secret") == 0o700
    assert mode(tmp_path / "secret" / "env.json") == 0o600
    with pytest.raises(FileExistsError):  # never written over
        shipping.store_secrets(tmp_path, SECRETS)
    assert launcher.take_secrets(tmp_path) == SECRETS
    assert not (tmp_path / "secret").exists()
    assert launcher.take_secrets(tmp_path) == {}


def test_the_remote_writer_and_the_archive_give_the_same_modes(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    subprocess.run(
        [sys.executable, "-c", shipping.STORE_SECRETS_SCRIPT, str(remote)],
        input=json.dumps(SECRETS).encode(),
        check=True,
    )
    assert mode(remote / "secret") == 0o700 and mode(remote / "secret" / "env.json") == 0o600
    assert launcher.take_secrets(remote) == SECRETS

    data = shipping.secrets_archive("var/lib/trainform/runs/r1", SECRETS)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        folder = members["var/lib/trainform/runs/r1/secret"]
        file = members["var/lib/trainform/runs/r1/secret/env.json"]
        assert folder.isdir() and folder.mode == 0o700 and file.mode == 0o600
        extracted = tar.extractfile(file)
        assert extracted is not None and json.loads(extracted.read()) == SECRETS


def test_shipping_and_the_launcher_agree_on_the_secret_file():
    assert (shipping.SECRET_DIR, shipping.SECRET_FILE) == (
        launcher.SECRET_DIR,
        launcher.SECRET_FILE,
    )


def test_a_collected_run_that_never_started_leaves_no_secret(tmp_path):
    run_dir, dest = tmp_path / "run", tmp_path / "collected"
    (run_dir / "src" / "outputs").mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"outputs_dir": "outputs", "secrets": {}}))
    shipping.store_secrets(run_dir, SECRETS)
    shipping.collect_run_folder(run_dir, dest)
    assert not (run_dir / "secret").exists()
    assert b"hunter2" not in (dest / "spec.json").read_bytes()


def test_a_launcher_whose_secrets_are_gone_fails_saying_so(tmp_path):
    """Started twice (or the file was deleted): the run fails instead of running without
    the values it was given."""
    (tmp_path / "spec.json").write_text(
        json.dumps(
            {
                "run_id": "r1",
                "script": "x.py",
                "blob_dir": str(tmp_path),
                "manifest": {"entries": []},
                "secrets": {"env": ["TOKEN"], "variables": []},
            }
        )
    )
    assert launcher.main([str(tmp_path)]) == 1
    status = launcher.read_status(tmp_path)
    assert status["status"] == "failed" and "TOKEN" in status["message"], status


# -------------------------------------------------------------------- the run's environment


def test_inherited_environment():
    environ = {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_ALL": "C",
        "TRAINFORM_VAR_password": "pw",
        "TRAINFORM_LAUNCHER_CGROUP": "off",
        "TF_VAR_x": "1",
        "TRAINFORM_IMAGE": "img",
        "CUDA_VISIBLE_DEVICES": "0",
        "HF_HOME": "/hf",
        "OTHER": "o",
    }
    assert launcher.inherited_environ(environ) == {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_ALL": "C",
        "TRAINFORM_IMAGE": "img",
        "CUDA_VISIBLE_DEVICES": "0",
        "HF_HOME": "/hf",
        "OTHER": "o",
    }
    narrowed = launcher.inherited_environ(environ, ["CUDA_*", "HF_HOME", "TRAINFORM_VAR_*"])
    assert narrowed == {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_ALL": "C",
        "TRAINFORM_IMAGE": "img",
        "CUDA_VISIBLE_DEVICES": "0",
        "HF_HOME": "/hf",
    }
    assert set(launcher.inherited_environ(environ, [])) == {
        "PATH",
        "HOME",
        "LC_ALL",
        "TRAINFORM_IMAGE",
    }


# -------------------------------------------------------------------- fingerprints

DESIRED = {
    "compute": {"address": "compute.box", "type": "local"},
    "environment": {
        "address": "environment.py",
        "python": "3.11",
        "pip": ["numpy==1.26"],
        "variables": {"KEY": "v"},
    },
    "script": "train.py",
    "command": None,
    "env": {"A": "1", "TOKEN": "hunter2"},
    "node_count": 1,
    "arguments": ["--lr", 0.1, 10],
}
NOWHERE = Path("/nonexistent")


def key(value: bytes):
    return lambda: value


def test_a_run_without_sensitive_inputs_keeps_its_fingerprint():
    # as computed before keyed hashes existed: recorded runs stay up to date
    legacy = "e0733d693f18f0aa05b6d7c0e4e74de5ef3eccfb6ac4882648e698efecdd2291"
    assert fingerprint(DESIRED, "snap123", NOWHERE) == legacy
    assert fingerprint(DESIRED, "snap123", NOWHERE, key(b"k" * 32)) == legacy
    assert fingerprint(with_sensitive_paths(DESIRED, []), "snap123", NOWHERE) == legacy


@pytest.mark.parametrize(
    ("path", "change"),
    [
        ("env.TOKEN", lambda d: d["env"].update(TOKEN="other")),
        ("env", lambda d: d["env"].update(A="2")),
        ("environment.variables.KEY", lambda d: d["environment"]["variables"].update(KEY="w")),
        ("environment", lambda d: d["environment"].update(python="3.12")),
        ("arguments", lambda d: d.update(arguments=["--lr", 0.2])),
        ("script", lambda d: d.update(script="other.py")),
    ],
)
def test_a_sensitive_input_enters_only_keyed(path, change):
    desired = with_sensitive_paths(json.loads(json.dumps(DESIRED)), [path])
    plain = fingerprint(DESIRED, "snap123", NOWHERE)
    one = fingerprint(desired, "snap123", NOWHERE, key(b"1" * 32))
    # unlike the plain hash, which anyone could recompute for a guess ...
    assert one != plain
    # ... it depends on the key, and is the same for the same key
    assert one != fingerprint(desired, "snap123", NOWHERE, key(b"2" * 32))
    assert one == fingerprint(dict(desired), "snap123", NOWHERE, key(b"1" * 32))
    # and a change of the sensitive input still shows
    changed = json.loads(json.dumps(desired))
    change(changed)
    assert fingerprint(changed, "snap123", NOWHERE, key(b"1" * 32)) != one


def test_only_the_sensitive_key_is_hidden():
    """``env.TOKEN`` sensitive: another env value is hashed as before, so the keyed hash of
    TOKEN is all that differs (a change of A changes the fingerprint either way)."""
    desired = with_sensitive_paths(DESIRED, ["env.TOKEN", "tags.x", "compute.password"])
    assert desired[SENSITIVE_PATHS] == ["compute.password", "env.TOKEN", "tags.x"]
    fp = fingerprint(desired, "snap123", NOWHERE, key(b"1" * 32))
    other_a = {**desired, "env": {"A": "2", "TOKEN": "hunter2"}}
    assert fingerprint(other_a, "snap123", NOWHERE, key(b"1" * 32)) != fp


def test_sensitive_inputs_without_a_key_are_refused():
    with pytest.raises(ProviderError, match="key"):
        fingerprint(with_sensitive_paths(DESIRED, ["env.TOKEN"]), "snap123", NOWHERE)


def test_the_state_keeps_one_random_key(tmp_path):
    first = SQLiteStateStore(tmp_path / "a" / "state.db")
    key_a = first.fingerprint_key()
    assert len(key_a) == 32 and first.fingerprint_key() == key_a
    assert first.lineage_serial() == (None, 0)  # keeping a key is no change of state
    first.close()
    assert SQLiteStateStore(tmp_path / "a" / "state.db").fingerprint_key() == key_a
    assert SQLiteStateStore(tmp_path / "b" / "state.db").fingerprint_key() != key_a
