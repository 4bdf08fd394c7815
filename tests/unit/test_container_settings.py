"""Container environments without an engine: the docker block's settings and their
translation into container options, the build-context hash that tags images, fingerprints,
and which compute types accept a docker environment at plan time. (Runs against a real
engine are in tests/docker/test_container_env.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.providers.base import ProviderContext
from trainform.providers.run import RunProvider
from trainform.runs import spec as runspec
from trainform.runs.images import (
    check_settings,
    container_options,
    context_hash,
    gpu_count,
    image_settings,
    parse_size,
)


@pytest.mark.parametrize(
    ("value", "count"),
    [("all", -1), ("ALL", -1), (2, 2), (1.0, 1), ("3", 3), (None, None), (0, None)],
)
def test_gpus_become_a_device_request_count(value, count):
    assert gpu_count(value) == count


@pytest.mark.parametrize("value", ["some", -1, 1.5, True, "2.5"])
def test_invalid_gpus_are_refused(value):
    with pytest.raises(ValueError, match="gpus"):
        gpu_count(value)


def test_gpus_all_is_a_device_request_for_every_gpu():
    options = container_options({"image": "x", "gpus": "all"})
    [request] = options["device_requests"]
    assert request["Count"] == -1
    assert request["Capabilities"] == [["gpu"]]
    assert container_options({"image": "x", "gpus": 2})["device_requests"][0]["Count"] == 2
    assert "device_requests" not in container_options({"image": "x"})


def test_limits_pass_through_in_engine_units():
    options = container_options({"image": "x", "shm_size": "1g", "memory": "512m", "cpus": 1.5})
    assert options == {"shm_size": 1 << 30, "mem_limit": 512 << 20, "nano_cpus": 1_500_000_000}


@pytest.mark.parametrize(
    ("text", "size"),
    [("2g", 2 << 30), ("512m", 512 << 20), ("1.5G", 3 << 29), ("64k", 64 << 10), ("1GiB", 1 << 30)],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "-1g", "0m", "2x"])
def test_invalid_sizes(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_settings_problems(tmp_path: Path):
    assert check_settings({"image": "a", "dockerfile": "Dockerfile"}, tmp_path) == [
        "docker needs exactly one of image or dockerfile",
        "docker.dockerfile 'Dockerfile' does not exist",
    ]
    problems = check_settings(
        {"image": "a", "gpus": "many", "memory": "lots", "cpus": 0, "build_args": {"A": "1"}},
        tmp_path,
    )
    assert any("build_args are only used with dockerfile" in p for p in problems)
    assert any("gpus" in p for p in problems)
    assert any("memory" in p for p in problems)
    assert any("cpus" in p for p in problems)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert check_settings({"dockerfile": "Dockerfile", "build_context": "."}, tmp_path) == []
    assert "docker.build_context 'nope' is not a folder" in check_settings(
        {"dockerfile": "Dockerfile", "build_context": "nope"}, tmp_path
    )


def _context(tmp_path: Path) -> dict:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM base\nCOPY . /app\n")
    (tmp_path / "img" / "requirements.txt").write_text("numpy\n")
    return {"dockerfile": "img/Dockerfile", "build_args": {"A": "1"}}


def test_context_hash_follows_every_input_of_a_build(tmp_path: Path):
    docker = _context(tmp_path)
    first = context_hash(docker, tmp_path)
    assert context_hash(docker, tmp_path) == first
    (tmp_path / "img" / "requirements.txt").write_text("numpy==2\n")
    second = context_hash(docker, tmp_path)
    assert second != first
    assert context_hash({**docker, "build_args": {"A": "2"}}, tmp_path) != second
    (tmp_path / "img" / "new.txt").write_text("")
    third = context_hash(docker, tmp_path)
    assert third != second
    (tmp_path / "img" / "Dockerfile").write_text("FROM base\n")
    assert context_hash(docker, tmp_path) != third


def test_context_hash_leaves_out_dockerignored_files_and_trainform_data(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    (tmp_path / ".dockerignore").write_text("# data\ndata/\n")
    docker = {"dockerfile": "Dockerfile", "build_context": "."}
    before = context_hash(docker, tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"x" * 100)
    (tmp_path / ".trainform" / "local").mkdir(parents=True)
    (tmp_path / ".trainform" / "state.db").write_bytes(b"state")
    assert context_hash(docker, tmp_path) == before
    settings = image_settings(docker, tmp_path)
    assert settings is not None
    assert settings["image"] == f"trainform-env:{before[:12]}"
    assert settings["build"]["exclude"] == ["data/", ".trainform"]


def test_fingerprints_of_runs_without_docker_are_unchanged(tmp_path: Path):
    """Adding container environments must not resubmit every existing run: the fingerprint
    of a run without a docker block is computed exactly as before."""
    desired = {
        "compute": {"address": "compute.local", "type": "local"},
        "environment": {"python": "python3", "pip": ["x"]},
        "script": "train.py",
        "arguments": ["--lr", 0.1],
    }
    assert (
        runspec.fingerprint(desired, "snap", tmp_path)
        == "f06a5479e495148aa125ff1c8b14160b07c27d11ca5899626440829cb63fef4a"
    )


def test_fingerprint_follows_the_image_but_not_resource_limits(tmp_path: Path):
    base = {"compute": {"address": "compute.local", "type": "local"}, "script": "t.py"}

    def fp(docker: dict) -> str:
        return runspec.fingerprint({**base, "environment": {"docker": docker}}, "s", tmp_path)

    plain = runspec.fingerprint(base, "s", tmp_path)
    a = fp({"image": "a:1"})
    assert a != plain
    assert fp({"image": "b:1"}) != a
    assert fp({"image": "a:1", "gpus": "all"}) != a
    assert fp({"image": "a:1", "memory": "2g", "cpus": 2, "shm_size": "1g"}) == a
    docker = _context(tmp_path)
    built = fp(docker)
    (tmp_path / "img" / "requirements.txt").write_text("torch\n")
    assert fp(docker) != built


@pytest.mark.parametrize(
    ("ctype", "hint"),
    [("ssh", None), ("docker-cluster", "node_image"), ("local", None)],
)
def test_compute_without_docker_capability_rejects_a_docker_environment(
    tmp_path: Path, ctype: str, hint: str | None
):
    (tmp_path / "train.py").write_text("")
    provider = RunProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))
    desired = {
        "compute": {"address": f"compute.{ctype}", "type": ctype, "max_nodes": 2},
        "environment": {"address": "environment.gpu", "docker": {"image": "x:1"}},
        "script": "train.py",
        "node_count": 1,
    }
    problems = [p for p in provider.validate("run.train", desired) if "container" in p]
    if hint is None:
        assert problems == []
    else:
        [problem] = problems
        assert "environment.gpu runs in a container" in problem
        assert f"compute type {ctype!r} cannot run containers" in problem
        assert hint in problem


def test_ssh_compute_refuses_containers_where_its_facts_show_no_usable_engine(tmp_path: Path):
    (tmp_path / "train.py").write_text("")
    provider = RunProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))
    compute = {
        "address": "compute.box",
        "type": "ssh",
        "username": "tfuser",
        "addresses": ["10.0.0.5", "10.0.0.6"],
        "facts": {"10.0.0.5": {"docker": True}, "10.0.0.6": {"docker": False}},
    }
    desired = {
        "compute": compute,
        "environment": {"address": "environment.gpu", "docker": {"image": "x:1"}},
        "script": "train.py",
        "node_count": 1,
    }
    [problem] = [p for p in provider.validate("run.train", desired) if "Docker" in p]
    assert "10.0.0.6 is not usable by tfuser" in problem
    assert "docker group" in problem
    desired["node_count"] = 2  # a container per host of the pool
    assert [p for p in provider.validate("run.train", desired) if "Docker" in p] == [problem]
