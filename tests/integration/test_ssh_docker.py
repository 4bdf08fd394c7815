"""Container environments on ssh compute, through the real CLI: a real OpenSSH server on
127.0.0.1 (logging in as the unprivileged tfuser, who is in the docker group) in front of
this machine's real Docker engine, reached over the compute's own SSH connection.

Covered: a run inside a named image (in a container, as tfuser's uid, outputs back, no
container left); a 2-node run on a pool of two servers, a container per rank meeting over the
host's network; a Dockerfile built on the host's engine, reused on the next apply; a
password-authenticated compute whose password reaches no file or output; an unknown host key
refused before anything reaches docker; `runs cancel` leaving no container or process.

Fixtures: `cli` (tests/conftest.py); the servers, `tfuser` and keys
(tests/integration/conftest.py); `base_image`, `docker_client` and `no_leftovers`
(tests/docker_engine.py). Helpers come from tests/helpers.py and test_ssh_compute.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import CLI, failed, ok, recorded, wait_until
from test_ssh_compute import (
    RENDEZVOUS,
    SLEEPER,
    assert_no_auth_attempt,
    compute_block,
    files_containing,
    pool_block,
    run_show,
    sensitive_variable,
    state,
    tfuser_processes,
)
from test_ssh_compute import (
    run_block as compute_run_block,
)

from trainform.runs.images import IMAGE_REPOSITORY

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.integration.conftest import SSHServer, TestUser, UserKey

PROJECT_LABEL = "trainform.project"

# Proves where it runs: /.dockerenv, its uid, and (for built images) the build's marker.
PROBE = """\
import os
if os.path.exists("/marker"):
    print("marker:", open("/marker").read().strip())
print("in container:", os.path.exists("/.dockerenv"))
print("uid:", os.getuid())
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "result.txt"), "w") as fh:
    fh.write("from the container")
"""


@pytest.fixture(scope="module", autouse=True)
def tfuser_uses_docker(tfuser: TestUser) -> None:
    """tfuser may use the engine's socket (its SSH sessions start after this)."""
    subprocess.run(["usermod", "-aG", "docker", tfuser.name], check=True)


def containers_of(client: Any, cli: CLI) -> list[Any]:
    return [
        c
        for c in client.containers.list(all=True, filters={"label": PROJECT_LABEL})
        if c.labels.get(PROJECT_LABEL) == str(cli.cwd)
    ]


def environment(docker: str) -> str:
    return f'environment "img" {{\n  docker {{\n{docker}\n  }}\n}}\n'


def run_block(name: str = "probe", script: str = "train.py", **attributes: Any) -> str:
    return compute_run_block(name, script, environment="environment.img", **attributes)


def test_run_in_a_named_image_on_the_ssh_host(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    base_image: str,
    docker_client: Any,
    no_leftovers: None,
    tmp_path: Path,
) -> None:
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + environment(f'    image = "{base_image}"\n    memory = "300m"')
        + run_block(),
    )
    cli.write("src/train.py", PROBE)
    out = ok(cli("apply", "--auto-approve")).out
    assert "in container: True" in out, out
    assert f"uid: {tfuser.uid}" in out, out
    assert "running in container trainform-" in out, out
    run = run_show(cli, "run.probe")
    assert run["status"] == "completed", run
    assert (Path(run["outputs_path"]) / "result.txt").read_text() == "from the container"
    handle = recorded(cli.cwd)["run.probe"].computed["handle"]
    assert handle["nodes"][0]["container"].startswith("trainform-"), handle
    assert containers_of(docker_client, cli) == []  # removed once the run was over
    # The run's files on the host belong to tfuser (the container ran as its uid:gid).
    run_dir = Path(handle["nodes"][0]["run_dir"])
    assert (run_dir / "status.json").stat().st_uid == tfuser.uid
    # The host's facts say docker is usable; an unchanged configuration plans nothing.
    assert state(cli)["compute.box"]["values"]["facts"]["127.0.0.1"]["docker"] is True
    ok(cli("plan", "--detailed-exitcode"))


def test_multi_node_run_in_containers_on_a_pool_meets_over_the_hosts_network(
    cli: CLI,
    sshd_factory: Any,
    user_key: UserKey,
    remote_tmp: str,
    base_image: str,
    docker_client: Any,
    no_leftovers: None,
    tmp_path: Path,
) -> None:
    a, b = sshd_factory(), sshd_factory()
    cli.write(
        "main.train.hcl",
        pool_block(a, b, f"{remote_tmp}/tf", user_key, tmp_path)
        + environment(f'    image = "{base_image}"')
        + run_block(node_count=2),
    )
    cli.write("src/train.py", "import os\nassert os.path.exists('/.dockerenv')\n" + RENDEZVOUS)
    out = ok(cli("apply", "--auto-approve")).out
    assert "rank 0 got: hello from rank 1" in out, out
    handle = recorded(cli.cwd)["run.probe"].computed["handle"]
    names = [node["container"] for node in handle["nodes"]]
    assert len(set(names)) == 2 and names[1].endswith("-node1"), names
    run = run_show(cli, "run.probe")
    assert run["status"] == "completed", run
    collected = Path(run["outputs_path"]).parent
    assert (collected / "nodes" / "1" / "outputs" / "rendezvous.json").is_file()
    assert containers_of(docker_client, cli) == []


def test_a_named_image_missing_on_the_host_is_refused_at_plan_time(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, base_image: str
) -> None:
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + environment(f'    image = "{base_image}"')
        + run_block(),
    )
    cli.write("src/train.py", PROBE)
    ok(cli("apply", "--auto-approve"))
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + environment('    image = "trainform/not-here:1"')
        + run_block(),
    )
    failed(cli("plan"), "trainform/not-here:1", "not on the Docker engine of", "pull")


def test_dockerfile_built_on_the_host_then_reused(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    base_image: str,
    no_leftovers: None,
    built_images: list[str],
) -> None:
    cli.write(
        "docker/Dockerfile",
        f'FROM {base_image}\nARG MARKER\nCOPY nonce /nonce\nRUN echo "$MARKER" > /marker\n',
    )
    cli.write("docker/nonce", f"{cli.cwd}\n")  # unique per test: the first apply builds
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + environment(
            '    dockerfile = "docker/Dockerfile"\n    build_context = "docker"\n'
            '    build_args = { MARKER = "built-on-the-host" }'
        )
        + run_block(),
    )
    cli.write("src/train.py", PROBE)
    plan = ok(cli("plan")).out
    match = re.search(rf"image ({IMAGE_REPOSITORY}:[0-9a-f]{{12}}) will be built from", plan)
    assert match, plan
    tag = match.group(1)
    built_images.append(tag)

    out = ok(cli("apply", "--auto-approve")).out
    # The build's output is shown while it goes (during submit), once, and is in the log.
    assert out.count("[build] Step 1/") == 1, out
    assert out.index("[build] Step 1/") < out.index("submitted as run"), out
    assert f"Successfully tagged {tag}" in out, out
    assert "marker: built-on-the-host" in out, out
    assert f"uid: {tfuser.uid}" in out, out
    logs = ok(cli("runs", "logs", "run.probe")).out
    assert "[build] Step 1/" in logs, logs

    # A source change submits again; the image's context is unchanged: no build.
    cli.write("src/train.py", PROBE + 'print("second run")\n')
    plan = ok(cli("plan")).out
    assert "will be built" not in plan, plan
    out = ok(cli("apply", "--auto-approve")).out
    assert "second run" in out, out
    assert "marker: built-on-the-host" in out, out
    assert "[build]" not in out, out


def test_password_authenticated_compute_keeps_the_password_out_of_everything(
    cli: CLI,
    sshd: SSHServer,
    remote_tmp: str,
    tfuser: TestUser,
    base_image: str,
    docker_client: Any,
    no_leftovers: None,
    tmp_path: Path,
) -> None:
    workdir = f"{remote_tmp}/tf"
    cli.write(
        "main.train.hcl",
        sensitive_variable("pw")
        + compute_block(sshd, workdir, password="var.pw")
        + environment(f'    image = "{base_image}"')
        + run_block(),
    )
    cli.write("src/train.py", PROBE)
    secret = {"TRAINFORM_VAR_pw": tfuser.password}
    plan_file = tmp_path / "saved.plan"
    outputs = [ok(cli("plan", "--out", str(plan_file), **secret))]
    since = sshd.log_size()
    outputs.append(ok(cli("apply", "--auto-approve", str(plan_file), **secret)))
    assert "in container: True" in outputs[-1].out, outputs[-1].out
    assert "Accepted password for tfuser" in sshd.log(since)
    assert "Accepted publickey" not in sshd.log(since)  # no other credential was tried
    outputs.append(ok(cli("runs", "logs", "run.probe")))
    outputs.append(ok(cli("show", "--json", **secret)))

    # A detached run followed and canceled from new processes (the password comes from the
    # configuration again; the run's record has none).
    cli.write("src/train.py", SLEEPER)
    cli.write(
        "main.train.hcl",
        sensitive_variable("pw")
        + compute_block(sshd, workdir, password="var.pw")
        + environment(f'    image = "{base_image}"')
        + run_block(arguments=["pw-docker-marker"]),
    )
    outputs.append(ok(cli("apply", "--auto-approve", "--detach", **secret)))
    wait_until(
        "the run to start",
        lambda: "sleeping" in cli("runs", "logs", "run.probe", **secret).out,
        timeout=60,
    )
    outputs.append(ok(cli("runs", "cancel", "run.probe", **secret)))
    wait_until(
        "the run to be canceled",
        lambda: run_show(cli, "run.probe")["status"] == "canceled",
        timeout=60,
    )
    outputs.append(ok(cli("destroy", "--auto-approve", **secret)))
    for result in outputs:
        assert tfuser.password not in result.all, result.all
    assert files_containing(cli.cwd, tfuser.password) == []
    assert files_containing(plan_file.parent, tfuser.password) == []
    assert files_containing(Path(workdir), tfuser.password) == []
    assert containers_of(docker_client, cli) == []


def test_unknown_host_key_is_refused_before_anything_reaches_docker(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    base_image: str,
    docker_client: Any,
    no_leftovers: None,
    tmp_path: Path,
) -> None:
    known_hosts = tmp_path / "known_hosts"  # empty: the server is unknown
    known_hosts.write_text("")
    cli.write(
        "main.train.hcl",
        compute_block(
            sshd, f"{remote_tmp}/tf", key=user_key, pin=False, known_hosts=str(known_hosts)
        )
        + environment(f'    image = "{base_image}"')
        + run_block(),
    )
    cli.write("src/train.py", PROBE)
    since = sshd.log_size()
    result = failed(cli("apply", "--auto-approve"), sshd.fingerprint, "trust_on_first_use")
    assert "in container" not in result.out
    # No login, so no session channel, so no `docker system dial-stdio` ever ran.
    assert_no_auth_attempt(sshd.wait_for_log("do_cleanup", since=since))
    assert containers_of(docker_client, cli) == []
    assert not Path(f"{remote_tmp}/tf").exists()


def test_runs_cancel_stops_the_container_and_leaves_none(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    base_image: str,
    docker_client: Any,
    no_leftovers: None,
) -> None:
    marker = f"marker-{Path(remote_tmp).name}"
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + environment(f'    image = "{base_image}"')
        + run_block(arguments=[marker]),
    )
    cli.write("src/train.py", SLEEPER)
    ok(cli("apply", "--auto-approve", "--detach"))
    wait_until(
        "the run to start in its container",
        lambda: (
            run_show(cli, "run.probe")["status"] == "running" and len(tfuser_processes(marker)) >= 2
        ),
        timeout=60,
    )
    [container] = containers_of(docker_client, cli)
    assert container.status == "running"

    ok(cli("runs", "cancel", "run.probe"))
    run = wait_until(
        "the run to be recorded as canceled",
        lambda: (r := run_show(cli, "run.probe"))["status"] == "canceled" and r,
        timeout=60,
    )
    assert not tfuser_processes(marker), run  # the script and its child
    wait_until("the container to be removed", lambda: not containers_of(docker_client, cli))
    ok(cli("destroy", "--auto-approve"))
    assert containers_of(docker_client, cli) == []
