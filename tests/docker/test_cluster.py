"""Docker-backed clusters through the real CLI and a real Docker engine: creating a cluster
(one node and a private network for min_nodes = 1; nothing until a run arrives for
min_nodes = 0), a 2-node run doing a real TCP rendezvous between node containers, scale-up
from zero, a run queued past max_nodes that starts when nodes free up, idle scale-down, which
changes update in place and which replace the nodes, drift (nodes removed or killed behind
trainform's back) shown by plan and healed by apply, a node killed mid-run, what plan
rejects, and that destroy leaves nothing behind.

Each test drives `python -m trainform` in a configuration folder under its own tmp_path and
uses the `no_leftovers` fixture, which fails it if any container, network or volume of that
folder survives.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from docker_engine import managed
from helpers import failed, ok, wait_until

pytestmark = pytest.mark.usefixtures("no_leftovers")

CLUSTER_LABEL = "trainform.cluster"

# Both ranks wait for /tmp/go in their own container, so a test decides when the run may end
# (no sleeps to tune); then rank 1 connects to rank 0 on MASTER_ADDR:MASTER_PORT and each
# writes an output file.
RENDEZVOUS = """\
import os, socket, time
rank = int(os.environ["NODE_RANK"])
master, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
me = socket.gethostbyname(socket.gethostname())
print(f"rank {rank} of {os.environ['WORLD_SIZE']} ip {me} master {master}:{port}", flush=True)
deadline = time.time() + 60
while not os.path.exists("/tmp/go") and time.time() < deadline:
    time.sleep(0.05)
if rank == 0:
    server = socket.create_server(("0.0.0.0", port))
    server.settimeout(30)
    conn, (peer, _) = server.accept()
    print(f"got {conn.recv(100).decode()!r} from {peer}", flush=True)
else:
    while True:
        try:
            conn = socket.create_connection((master, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    conn.sendall(f"hello from rank {rank} at {me}".encode())
conn.close()
out = os.environ["TRAINFORM_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"rank{rank}.txt"), "w") as fh:
    fh.write(me)
"""

SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"


def cluster_block(
    image: str,
    min_nodes: int,
    max_nodes: int,
    idle: str = "60s",
    size: str = "",
    name: str = "cpu",
) -> str:
    return (
        f'compute "{name}" {{\n'
        '  type         = "docker-cluster"\n'
        f'  node_image   = "{image}"\n'
        f"  min_nodes    = {min_nodes}\n"
        f"  max_nodes    = {max_nodes}\n"
        f'  idle_timeout = "{idle}"\n'
        f"{size}"
        "}\n"
    )


def run_block(name: str, nodes: int = 1, script: str = "", command: str = "") -> str:
    what = f'  script     = "{script}"\n' if script else f"  command    = {command}\n"
    return (
        f'run "{name}" {{\n'
        "  compute    = compute.cpu\n"
        '  experiment = "cluster-tests"\n'
        '  source_dir = "src"\n'
        f"{what}"
        f"  node_count = {nodes}\n"
        "}\n"
    )


def compute_show(cli: Any, name: str = "cpu") -> dict[str, Any]:
    return json.loads(ok(cli("compute", "show", name, "--json")).out)


def run_show(cli: Any, ref: str) -> dict[str, Any]:
    return json.loads(ok(cli("runs", "show", ref, "--json")).out)


def cluster_containers(docker_client: Any, cluster_id: str) -> dict[str, Any]:
    """The node containers of a cluster, by name, as the engine lists them."""
    found = docker_client.containers.list(
        all=True, filters={"label": f"{CLUSTER_LABEL}={cluster_id}"}
    )
    return {c.name: c for c in found}


def network_exists(docker_client: Any, name: str) -> bool:
    return any(n.name == name for n in docker_client.networks.list(names=[name]))


def release(docker_client: Any, names: list[str]) -> None:
    """Let RENDEZVOUS runs on these nodes go on."""
    for name in names:
        code, out = docker_client.containers.get(name).exec_run(["touch", "/tmp/go"])
        assert code == 0, out


def running_scripts(container: Any, script: str = "sleeper.py") -> int:
    """How many processes in a container run ``script``."""
    name, ext = script.rsplit(".", 1)  # split, so that the probe does not count itself
    probe = (
        "import os, sys\n"
        "name = (sys.argv[1] + '.' + sys.argv[2]).encode()\n"
        "print(sum(name in open(f'/proc/{p}/cmdline', 'rb').read()"
        " for p in os.listdir('/proc') if p.isdigit()))"
    )
    code, out = container.exec_run(["python3", "-c", probe, name, ext])
    assert code == 0, out
    return int(out)


def destroy_leaves_nothing(cli: Any, docker_client: Any, tmp_path: Path) -> None:
    ok(cli("destroy", "-auto-approve", timeout=120))
    assert managed(docker_client, tmp_path) == []
    assert not list((cli.cwd / ".trainform" / "clusters").glob("*.json"))


# -- create, show, destroy ---------------------------------------------------------------------


def test_min_nodes_one_creates_a_node_on_a_private_network_and_destroy_removes_both(
    cli, base_image, docker_client, tmp_path
):
    cli.write("main.train.hcl", cluster_block(base_image, 1, 2))
    applied = ok(cli("apply", "-auto-approve"))
    assert "compute.cpu: Created" in applied.out, applied.out

    info = compute_show(cli)
    assert info["address"] == "compute.cpu"
    assert (info["min_nodes"], info["max_nodes"], info["idle_timeout"]) == (1, 2, 60.0)
    assert len(info["nodes"]) == 1, info
    node = info["nodes"][0]
    assert (node["state"], node["container"], node["run"]) == ("idle", "running", None)
    assert info["queue"] == []

    cluster_id = info["cluster_id"]
    assert network_exists(docker_client, cluster_id)
    containers = cluster_containers(docker_client, cluster_id)
    assert list(containers) == [node["name"]]
    container = containers[node["name"]]
    assert container.status == "running"
    on_network = container.attrs["NetworkSettings"]["Networks"]
    assert list(on_network) == [cluster_id], on_network  # only on the cluster's own network
    assert on_network[cluster_id]["IPAddress"] == node["address"]

    text = ok(cli("compute", "show", "cpu")).out
    assert node["name"] in text and "idle" in text, text
    assert "min_nodes 1, max_nodes 2" in text, text

    ok(cli("plan", "--detailed-exitcode"))  # the cluster is as configured: nothing to do
    destroy_leaves_nothing(cli, docker_client, tmp_path)
    assert not network_exists(docker_client, cluster_id)


def test_node_count_above_max_nodes_is_rejected_at_plan_time(
    cli, base_image, docker_client, tmp_path
):
    cli.write(
        "main.train.hcl",
        cluster_block(base_image, 0, 2) + run_block("big", nodes=3, command='["true"]'),
    )
    cli.write("src/.keep", "")
    for args in (("plan",), ("apply", "-auto-approve")):
        failed(cli(*args), "node_count = 3", "max_nodes = 2", "main.train.hcl:")
    assert managed(docker_client, tmp_path) == []  # apply stopped before creating anything


# -- a cold cluster: scale-up from zero, a 2-node rendezvous, a queued run, scale-down ---------


def test_cold_cluster_serves_a_two_node_run_queues_a_third_and_scales_back_to_zero(
    cli, base_image, docker_client, tmp_path
):
    cluster = cluster_block(base_image, 0, 2)
    cli.write("main.train.hcl", cluster)
    cli.write("src/ddp.py", RENDEZVOUS)
    ok(cli("apply", "-auto-approve"))

    # min_nodes = 0: a network, but no node until a run arrives.
    info = compute_show(cli)
    cluster_id = info["cluster_id"]
    assert info["nodes"] == [], info
    assert network_exists(docker_client, cluster_id)
    assert cluster_containers(docker_client, cluster_id) == {}

    # A 2-node run scales the cluster up from zero.
    cli.write("main.train.hcl", cluster + run_block("ddp", nodes=2, script="ddp.py"))
    ok(cli("apply", "-auto-approve", "--detach"))
    ddp_id = run_show(cli, "run.ddp")["id"]
    info = compute_show(cli)
    assert [n["run"] for n in info["nodes"]] == [ddp_id, ddp_id], info
    assert all(n["state"] == "busy" for n in info["nodes"]), info
    names = [n["name"] for n in info["nodes"]]
    containers = cluster_containers(docker_client, cluster_id)
    assert sorted(containers) == sorted(names)
    addresses = {
        name: c.attrs["NetworkSettings"]["Networks"][cluster_id]["IPAddress"]
        for name, c in containers.items()
    }

    # A third node's worth of work does not fit in max_nodes = 2: it waits, and says why.
    cli.write(
        "main.train.hcl",
        cluster
        + run_block("ddp", nodes=2, script="ddp.py")
        + run_block("solo", command='["python3", "-c", "print(\'solo ran\')"]'),
    )
    ok(cli("apply", "-auto-approve", "--detach"))
    solo = run_show(cli, "run.solo")
    assert solo["status"] == "queued", solo
    assert "waiting for 1 node(s)" in solo["message"], solo
    assert "max_nodes = 2" in solo["message"] and ddp_id in solo["message"], solo
    assert [q["run_id"] for q in compute_show(cli)["queue"]] == [solo["id"]]
    assert run_show(cli, "run.ddp")["status"] == "running"
    assert len(cluster_containers(docker_client, cluster_id)) == 2  # never past max_nodes

    # Rank 0 listens on MASTER_ADDR, its own address on the cluster network.
    head = wait_until(
        "rank 0 to print its address",
        lambda: re.search(
            r"rank 0 of 2 ip (\S+) master (\S+):(\d+)", cli("runs", "logs", "run.ddp").out
        ),
    )
    assert head.group(1) == head.group(2), head.group(0)
    master = head.group(2)
    assert master in addresses.values(), (master, addresses)

    release(docker_client, names)
    waited = ok(cli("runs", "wait", "run.ddp", timeout=90))
    assert "completed" in waited.all, waited.all
    ok(cli("runs", "wait", "run.solo", timeout=90))  # it starts once ddp frees the nodes
    assert run_show(cli, "run.solo")["status"] == "completed"
    assert "solo ran" in ok(cli("runs", "logs", "run.solo")).out

    # The nodes stay, idle, until idle_timeout (60 s) has passed.
    info = compute_show(cli)
    assert len(info["nodes"]) == 2 and all(n["state"] == "idle" for n in info["nodes"]), info

    # Both ranks' folders came back: rank 0's as the run's, rank 1's under nodes/1/.
    ddp = run_show(cli, "run.ddp")
    assert ddp["status"] == "completed" and ddp["exit_code"] == 0, ddp
    outputs = Path(ddp["outputs_path"])
    rank1 = outputs.parent / "nodes" / "1"
    other = (rank1 / "outputs" / "rank1.txt").read_text()
    assert (outputs / "rank0.txt").read_text() == master
    assert {master, other} == set(addresses.values())
    assert f"rank 1 of 2 ip {other} master {master}:" in (rank1 / "output.log").read_text()
    log0 = (outputs.parent / "output.log").read_text()
    assert f"got 'hello from rank 1 at {other}' from {other}" in log0, log0

    # A shorter idle_timeout (an update in place; apply itself removes no node), then,
    # once the nodes have been idle that long, reconcile removes them down to min_nodes = 0.
    short = cluster_block(base_image, 0, 2, idle="1s")
    cli.write(
        "main.train.hcl", cli.cwd.joinpath("main.train.hcl").read_text().replace(cluster, short)
    )
    ok(cli("apply", "-auto-approve"))
    assert len(cluster_containers(docker_client, cluster_id)) == 2
    time.sleep(1.2)
    reconciled = ok(cli("compute", "reconcile", "cpu")).out
    # The cluster's watcher, still alive after the detached runs, may retire them first.
    assert (
        reconciled.count("removed node") == 2 and "idle past 1s" in reconciled
    ) or "nodes: 0 " in reconciled, reconciled
    assert compute_show(cli)["nodes"] == []
    assert cluster_containers(docker_client, cluster_id) == {}
    assert network_exists(docker_client, cluster_id)  # the cluster itself remains
    ok(cli("plan", "--detailed-exitcode"))

    destroy_leaves_nothing(cli, docker_client, tmp_path)


def test_plan_removes_nodes_idle_past_the_timeout_down_to_min_nodes(
    cli, base_image, docker_client, tmp_path
):
    pair = run_block("pair", nodes=2, command='["python3", "-c", "print(\'pair ran\')"]')
    cli.write("main.train.hcl", cluster_block(base_image, 1, 2) + pair)
    cli.write("src/.keep", "")
    applied = ok(cli("apply", "-auto-approve", timeout=120))
    assert "pair ran" in applied.out, applied.out
    cluster_id = compute_show(cli)["cluster_id"]
    assert len(cluster_containers(docker_client, cluster_id)) == 2  # scaled up from 1

    # idle_timeout 60 s -> 1 s (in place); once the nodes have been idle that long, the
    # next command that touches the cluster (here a plan) removes one, down to min_nodes.
    cli.write("main.train.hcl", cluster_block(base_image, 1, 2, idle="1s") + pair)
    ok(cli("apply", "-auto-approve"))
    assert len(cluster_containers(docker_client, cluster_id)) == 2
    time.sleep(1.2)
    ok(cli("plan"))  # any command that touches the cluster does its housekeeping
    left = cluster_containers(docker_client, cluster_id)
    assert len(left) == 1 and all(c.status == "running" for c in left.values()), left
    assert len(compute_show(cli)["nodes"]) == 1

    destroy_leaves_nothing(cli, docker_client, tmp_path)


def test_with_no_command_running_a_queued_run_starts_and_idle_nodes_go(
    cli, base_image, docker_client, tmp_path
):
    """`apply --detach` and then nothing: the cluster's watcher process starts the queued run
    when the node frees up, and removes the node once it has been idle for idle_timeout."""
    first = run_block("first", command='["python3", "-c", "import time; time.sleep(6)"]')
    second = run_block("second", command='["python3", "-c", "print(\'second ran\')"]')
    cli.write("main.train.hcl", cluster_block(base_image, 0, 1, idle="2s") + first + second)
    cli.write("src/.keep", "")
    ok(cli("apply", "-auto-approve", "--detach", timeout=120))
    registry = next((cli.cwd / ".trainform" / "clusters").glob("*.json"))
    recorded = json.loads(registry.read_text())
    cluster_id = recorded["config"]["cluster_id"]
    assert len(recorded["queue"]) == 1, recorded  # max_nodes = 1: one of them waits
    queued = recorded["runs"][recorded["queue"][0]]["address"]

    def finished() -> bool:
        runs = json.loads(registry.read_text())["runs"]
        return len(runs) == 2 and all(r["state"] == "done" for r in runs.values())

    # No trainform command from here on: only the engine and the registry file are read.
    wait_until("both runs to finish", finished, timeout=90)
    wait_until("the idle node to go", lambda: not cluster_containers(docker_client, cluster_id))
    assert network_exists(docker_client, cluster_id)  # the cluster itself stays

    shown = run_show(cli, queued)
    assert shown["status"] == "completed", shown
    logs = ok(cli("runs", "logs", "run.second")).out
    assert "second ran" in logs, logs
    destroy_leaves_nothing(cli, docker_client, tmp_path)


def test_the_cluster_example_applies_and_destroys_cleanly(cli, base_image, docker_client, tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "cluster"
    for path in example.glob("*.*"):
        cli.write(path.name, path.read_text().replace("trainform/base:latest", base_image))
    applied = ok(cli("apply", "-auto-approve", timeout=180))
    assert "rank 0 got 'hello from rank 1'" in applied.out, applied.out
    for ref in ("run.ddp", "run.eval"):
        assert run_show(cli, ref)["status"] == "completed"
    destroy_leaves_nothing(cli, docker_client, tmp_path)


# -- changing the configuration ----------------------------------------------------------------


def test_scale_settings_update_in_place_while_image_or_size_replace_the_nodes(
    cli, base_image, docker_client, tmp_path
):
    cli.write("main.train.hcl", cluster_block(base_image, 1, 2))
    ok(cli("apply", "-auto-approve"))
    first = compute_show(cli)
    cluster_id = first["cluster_id"]
    node = first["nodes"][0]["name"]
    container_id = cluster_containers(docker_client, cluster_id)[node].id

    # max_nodes, idle_timeout and min_nodes: updated in place, the node container stays.
    cli.write("main.train.hcl", cluster_block(base_image, 2, 3, idle="30s"))
    plan = ok(cli("plan", "--detailed-exitcode"), 2).out
    assert "compute.cpu will be updated in-place" in plan, plan
    assert "max_nodes" in plan and "idle_timeout" in plan and "replace" not in plan, plan
    ok(cli("apply", "-auto-approve"))
    info = compute_show(cli)
    assert info["cluster_id"] == cluster_id
    assert (info["min_nodes"], info["max_nodes"], info["idle_timeout"]) == (2, 3, 30.0)
    assert len(info["nodes"]) == 2 and node in [n["name"] for n in info["nodes"]], info
    containers = cluster_containers(docker_client, cluster_id)
    assert containers[node].id == container_id and containers[node].status == "running"
    ok(cli("plan", "--detailed-exitcode"))

    # node_size: the nodes are replaced (a new cluster with the new limits).
    size = '  node_size {\n    cpus   = 1\n    memory = "256m"\n  }\n'
    cli.write("main.train.hcl", cluster_block(base_image, 2, 3, idle="30s", size=size))
    plan = ok(cli("plan", "--detailed-exitcode"), 2).out
    assert "compute.cpu must be replaced" in plan and "node_size" in plan, plan
    ok(cli("apply", "-auto-approve"))
    sized = compute_show(cli)
    assert sized["cluster_id"] != cluster_id and len(sized["nodes"]) == 2, sized
    assert cluster_containers(docker_client, cluster_id) == {}
    assert not network_exists(docker_client, cluster_id)
    for container in cluster_containers(docker_client, sized["cluster_id"]).values():
        host = container.attrs["HostConfig"]
        assert (host["NanoCpus"], host["Memory"]) == (10**9, 256 * 2**20), host

    # node_image (another name of the same image): replaced as well.
    other = "trainform/base:latest"  # scripts/build-base-image tags it by recipe hash too
    assert other != base_image, base_image
    cli.write("main.train.hcl", cluster_block(other, 2, 3, idle="30s", size=size))
    plan = ok(cli("plan", "--detailed-exitcode"), 2).out
    assert "compute.cpu must be replaced" in plan and "node_image" in plan, plan
    assert "forces replacement" in plan, plan
    ok(cli("apply", "-auto-approve"))
    imaged = compute_show(cli)
    assert imaged["cluster_id"] != sized["cluster_id"], imaged
    assert cluster_containers(docker_client, sized["cluster_id"]) == {}
    new = cluster_containers(docker_client, imaged["cluster_id"])
    assert len(new) == 2 and {c.attrs["Config"]["Image"] for c in new.values()} == {other}

    destroy_leaves_nothing(cli, docker_client, tmp_path)


# -- drift -------------------------------------------------------------------------------------


def test_nodes_removed_or_killed_outside_trainform_show_in_plan_and_apply_heals(
    cli, base_image, docker_client, tmp_path
):
    cli.write("main.train.hcl", cluster_block(base_image, 2, 3))
    ok(cli("apply", "-auto-approve"))
    info = compute_show(cli)
    cluster_id = info["cluster_id"]
    removed, killed = sorted(n["name"] for n in info["nodes"])
    containers = cluster_containers(docker_client, cluster_id)
    containers[removed].remove(force=True)
    containers[killed].kill()

    for _ in range(2):  # the first plan's housekeeping must not make the second forget
        plan = ok(cli("plan", "--detailed-exitcode"), 2).out
        assert "compute.cpu will be updated in-place" in plan, plan
        assert f"node {removed} was removed outside trainform" in plan, plan
        assert f"node {killed} stopped" in plan, plan
        assert "0 of min_nodes = 2 nodes running" in plan, plan
    change = next(
        c
        for c in json.loads(ok(cli("plan", "--json")).out)["resource_changes"]
        if c["address"] == "compute.cpu"
    )
    # Terraform's format: an update in place has no action_reason (the text plan says why)
    assert change["change"]["actions"] == ["update"] and "action_reason" not in change

    ok(cli("apply", "-auto-approve"))
    healed = compute_show(cli)
    names = {n["name"] for n in healed["nodes"]}
    assert len(names) == 2 and not names & {removed, killed}, healed
    assert all(n["container"] == "running" for n in healed["nodes"]), healed
    containers = cluster_containers(docker_client, cluster_id)
    assert set(containers) == names  # the killed container is cleaned up too
    ok(cli("plan", "--detailed-exitcode"))

    destroy_leaves_nothing(cli, docker_client, tmp_path)


def test_a_node_killed_mid_run_fails_the_run_naming_it_and_stops_the_other_rank(
    cli, base_image, docker_client, tmp_path
):
    cli.write(
        "main.train.hcl",
        cluster_block(base_image, 0, 2) + run_block("long", nodes=2, script="sleeper.py"),
    )
    cli.write("src/sleeper.py", SLEEPER)
    ok(cli("apply", "-auto-approve", "--detach"))
    wait_until("the run to start", lambda: "started" in cli("runs", "logs", "run.long").out)
    info = compute_show(cli)
    cluster_id = info["cluster_id"]
    assert all(n["state"] == "busy" for n in info["nodes"]) and len(info["nodes"]) == 2, info
    victim, survivor = sorted(n["name"] for n in info["nodes"])
    node = docker_client.containers.get(survivor)
    assert running_scripts(node) == 1
    docker_client.containers.get(victim).kill()

    failed(cli("runs", "wait", "run.long", timeout=60), "failed")
    data = run_show(cli, "run.long")
    assert data["status"] == "failed", data
    assert f"node {victim} stopped" in data["message"], data

    # The other rank was stopped and its node freed; the killed node is gone.
    nodes = {n["name"]: n for n in compute_show(cli)["nodes"]}
    assert list(nodes) == [survivor] and nodes[survivor]["state"] == "idle", nodes
    wait_until(
        "the surviving rank's script to end",
        lambda: running_scripts(node) == 0,
        timeout=20,
    )
    plan = ok(cli("plan")).out
    assert "run.long will be resubmitted: the last run long-" in plan and " failed: " in plan, plan

    destroy_leaves_nothing(cli, docker_client, tmp_path)
    assert cluster_containers(docker_client, cluster_id) == {}
