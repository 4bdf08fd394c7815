"""Container environments against the real Docker engine, through the CLI as a user drives
them: a run inside an image built from a Dockerfile (build output in the apply output, outputs
collected, the image reused while its context is unchanged and rebuilt when it changes, the
plan saying which), a failed build, a run in a named image with its resource limits on the
container, cancel and destroy leaving nothing behind, a missing image refused at plan time,
and a container removed behind trainform's back.

Fixtures: `cli` (tests/conftest.py) runs `python -m trainform` in a temporary configuration
folder; `base_image` and `no_leftovers` come from tests/docker/conftest.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from helpers import ok, wait_until

from trainform.runs.images import IMAGE_REPOSITORY

PROJECT_LABEL = "trainform.project"


def show(cli: Any, ref: str) -> dict[str, Any]:
    return json.loads(ok(cli("runs", "show", ref, "--json")).out)


def containers_of(client: Any, cli: Any) -> list[Any]:
    return [
        c
        for c in client.containers.list(all=True, filters={"label": PROJECT_LABEL})
        if c.labels.get(PROJECT_LABEL) == str(cli.cwd)
    ]


COMPUTE = 'compute "local" {\n  type                = "local"\n  max_concurrent_runs = 4\n}\n'

# Proves where it runs: the marker the image build wrote, /.dockerenv, and its uid.
PROBE = """\
import os
print("marker:", open("/marker").read().strip())
print("in container:", os.path.exists("/.dockerenv"))
print("uid:", os.getuid())
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "result.txt"), "w") as fh:
    fh.write("from the container")
"""


def built_config(cli: Any, base_image: str, context_extra: str = "") -> None:
    cli.write(
        "docker/Dockerfile",
        f'FROM {base_image}\nARG MARKER\nCOPY nonce /nonce\nRUN echo "$MARKER" > /marker\n',
    )
    # Unique per test folder, so the first build really builds whatever ran before.
    cli.write("docker/nonce", f"{cli.cwd}\n{context_extra}")
    cli.write("src/train.py", PROBE)
    cli.write(
        "main.train.hcl",
        COMPUTE
        + """
environment "img" {
  docker {
    dockerfile    = "docker/Dockerfile"
    build_context = "docker"
    build_args    = { MARKER = "built-by-trainform" }
  }
}

run "probe" {
  experiment  = "containers"
  compute     = compute.local
  environment = environment.img
  source_dir  = "src"
  script      = "train.py"
}
""",
    )


def planned_tag(text: str) -> str:
    match = re.search(rf"image ({IMAGE_REPOSITORY}:[0-9a-f]{{12}}) will be built from", text)
    assert match, f"the plan does not say an image will be built:\n{text}"
    return match.group(1)


def test_run_in_built_image_reuses_it_until_its_context_changes(
    cli: Any, base_image: str, docker_client: Any, no_leftovers: None, built_images: list[str]
) -> None:
    built_config(cli, base_image)
    plan = ok(cli("plan")).out
    tag = planned_tag(plan)
    built_images.append(tag)
    assert "docker/Dockerfile" in plan

    out = ok(cli("apply", "-auto-approve")).out
    assert "[build] Step 1/" in out, out  # the build streamed into the apply output
    assert f"Successfully tagged {tag}" in out
    assert "marker: built-by-trainform" in out
    assert "in container: True" in out
    assert f"uid: {os.getuid()}" in out
    run = show(cli, "run.probe")
    assert run["status"] == "completed"
    outputs = Path(run["outputs_path"])
    assert (outputs / "result.txt").read_text() == "from the container"
    image = docker_client.images.get(tag)
    assert image.labels["trainform.managed"] == "1"
    # Virtualenvs made in this image would live in a cache keyed by its id, not the host's.
    run_dir = cli.cwd / ".trainform" / "local" / "runs" / run["id"]
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["environment"]["cache_dir"].endswith(f"image-{image.id.split(':')[1][:12]}")
    assert (run_dir / "output.log").stat().st_uid == os.getuid()

    # Unchanged context: nothing to do at all.
    assert "No changes" in ok(cli("plan")).out
    # A source change resubmits the run in the same image, without a build.
    cli.write("src/train.py", PROBE + 'print("second version")\n')
    plan = ok(cli("plan")).out
    assert "will be built" not in plan
    out = ok(cli("apply", "-auto-approve")).out
    assert "[build]" not in out
    assert "second version" in out
    assert f"(image {tag})" in out

    # A change in the build context: the plan says a new image will be built, and it is.
    cli.write("docker/nonce", f"{cli.cwd}\nchanged\n")
    plan = ok(cli("plan")).out
    new_tag = planned_tag(plan)
    built_images.append(new_tag)
    assert new_tag != tag
    assert "build context changed" in plan
    out = ok(cli("apply", "-auto-approve")).out
    assert f"Successfully tagged {new_tag}" in out
    assert "marker: built-by-trainform" in out
    assert not containers_of(docker_client, cli)


def test_failed_build_fails_the_run_with_its_last_lines(
    cli: Any, base_image: str, docker_client: Any, no_leftovers: None, built_images: list[str]
) -> None:
    built_config(cli, base_image)
    cli.write(
        "docker/Dockerfile",
        f"FROM {base_image}\nCOPY nonce /nonce\n"
        "RUN echo compiling-the-thing && echo missing-header-xyz >&2 && exit 3\n",
    )
    tag = planned_tag(ok(cli("plan")).out)
    built_images.append(tag)
    result = cli("apply", "-auto-approve")
    assert result.code == 1, result.all
    assert "Traceback" not in result.all
    assert "image build failed" in result.all
    assert "missing-header-xyz" in result.all  # the build's last lines
    run = show(cli, "run.probe")
    assert run["status"] == "failed"
    assert "missing-header-xyz" in run["message"]
    assert "\x1b[" not in run["message"]
    # No half-built image under the tag, and no intermediate container left.
    assert not docker_client.images.list(name=tag)
    leftover = [
        c.name
        for c in docker_client.containers.list(all=True)
        if "missing-header-xyz" in " ".join(c.attrs["Config"].get("Cmd") or [])
    ]
    assert not leftover


SLEEPER = """\
import os, time
print("started as", os.getuid(), flush=True)
time.sleep(120)
"""


def test_named_image_limits_cancel_and_destroy_leave_nothing(
    cli: Any, base_image: str, docker_client: Any, no_leftovers: None
) -> None:
    cli.write("src/sleep.py", SLEEPER)
    run = """
run "{name}" {{
  experiment   = "containers"
  compute      = compute.local
  environment  = environment.base
  source_dir   = "src"
  script       = "sleep.py"
  wait         = false
  grace_period = "2s"
}}
"""
    cli.write(
        "main.train.hcl",
        COMPUTE
        + """
environment "base" {
  docker {
    image    = "trainform/base:latest"
    shm_size = "256m"
    cpus     = 0.5
    memory   = "300m"
  }
}
"""
        + run.format(name="a")
        + run.format(name="b"),
    )
    ok(cli("apply", "-auto-approve"))
    for name in ("a", "b"):
        wait_until(
            f"run.{name} to start in its container",
            lambda name=name: "started as" in cli("runs", "logs", f"run.{name}").out,
        )
    running = {c.labels["trainform.run_id"]: c for c in containers_of(docker_client, cli)}
    assert len(running) == 2
    container = running[show(cli, "run.a")["id"]]
    host = container.attrs["HostConfig"]
    assert host["ShmSize"] == 256 << 20
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 300 << 20
    assert container.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
    assert container.labels["trainform.managed"] == "1"

    ok(cli("runs", "cancel", "run.a"))
    assert wait_until("run.a to be canceled", lambda: show(cli, "run.a")["status"] in ("canceled",))
    gone = wait_until(
        "run.a's container to be removed",
        lambda: all(
            c.labels["trainform.run_id"] != show(cli, "run.a")["id"]
            for c in containers_of(docker_client, cli)
        ),
    )
    assert gone
    ok(cli("destroy", "-auto-approve"))
    assert show(cli, "run.b")["status"] == "canceled"
    assert not containers_of(docker_client, cli)


def test_missing_image_is_refused_at_plan_time(cli: Any, docker_client: Any) -> None:
    cli.write("src/train.py", "print(1)\n")
    cli.write(
        "main.train.hcl",
        COMPUTE
        + """
environment "e" {
  docker { image = "trainform/not-here:1" }
}
run "r" {
  experiment  = "x"
  compute     = compute.local
  environment = environment.e
  source_dir  = "src"
  script      = "train.py"
}
""",
    )
    result = cli("plan")
    assert result.code == 1, result.all
    assert "Traceback" not in result.all
    assert "'trainform/not-here:1' is not on the local Docker engine" in result.all
    assert "does not pull" in result.all
    assert "scripts/build-base-image" in result.all


def test_container_removed_behind_our_back_is_lost(
    cli: Any, base_image: str, docker_client: Any, no_leftovers: None
) -> None:
    cli.write("src/sleep.py", SLEEPER)
    cli.write(
        "main.train.hcl",
        COMPUTE
        + f"""
environment "base" {{
  docker {{ image = "{base_image}" }}
}}
run "s" {{
  experiment  = "containers"
  compute     = compute.local
  environment = environment.base
  source_dir  = "src"
  script      = "sleep.py"
  wait        = false
}}
""",
    )
    ok(cli("apply", "-auto-approve"))
    wait_until("the run to start", lambda: "started as" in cli("runs", "logs", "run.s").out)
    [container] = containers_of(docker_client, cli)
    container.remove(force=True)
    run = wait_until(
        "the run to be lost",
        lambda: (r := show(cli, "run.s"))["status"] == "lost" and r,
    )
    assert "was removed while the run was going" in run["message"]
