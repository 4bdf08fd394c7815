"""Refactoring blocks on Docker-backed clusters, through the real CLI and a real Docker engine:
`trainform import compute.c CLUSTER_ID` adopts a cluster that `state rm` let go (its running
node keeps serving, the next plan has nothing to do, a run uses it, destroy removes it); an
`import` block does the same through plan and apply; a bad id, an id already managed, or a
cluster whose nodes do not match the block is one error naming the id and leaves state as it
was; an imported cluster whose block asks for another max_nodes is updated in place; and
`removed { lifecycle { destroy = false } }` forgets a cluster and leaves its nodes running.

Each test uses the `no_leftovers` fixture, which fails it if any container, network or volume
of its configuration folder survives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_engine import managed
from helpers import failed, ok
from test_cluster import CLUSTER_LABEL, cluster_block, cluster_containers, network_exists

pytestmark = pytest.mark.usefixtures("no_leftovers")

CONFIG = "main.train.hcl"


def cluster(image: str, min_nodes: int = 1, max_nodes: int = 2) -> str:
    return cluster_block(image, min_nodes, max_nodes, name="c")


def import_block(ident: str, to: str = "compute.c") -> str:
    return f'import {{\n  to = {to}\n  id = "{ident}"\n}}\n'


def compute_show(cli: Any, name: str = "c") -> dict[str, Any]:
    return json.loads(ok(cli("compute", "show", name, "--json")).out)


def resources(cli: Any) -> list[dict[str, Any]]:
    """What state records, as `show -json` prints it."""
    shown = json.loads(ok(cli("show", "-json")).out)
    return list(shown.get("values", {}).get("root_module", {}).get("resources", []))


def running(docker_client: Any, cluster_id: str) -> list[str]:
    """The names of the cluster's node containers that are running."""
    return sorted(
        name
        for name, c in cluster_containers(docker_client, cluster_id).items()
        if c.status == "running"
    )


@pytest.fixture
def remove_by_label(docker_client: Any, tmp_path: Path) -> Iterator[list[str]]:
    """Cluster ids whose containers and network are removed after the test, for clusters
    that trainform let go of (the no_leftovers check runs after this)."""
    ids: list[str] = []
    yield ids
    for ident in ids:
        flt = {"label": f"{CLUSTER_LABEL}={ident}"}
        for container in docker_client.containers.list(all=True, filters=flt):
            container.remove(force=True)
        for network in docker_client.networks.list(filters=flt):
            network.remove()


def test_state_rm_then_trainform_import_adopts_the_running_cluster_which_then_runs_and_is_destroyed(
    cli, base_image, docker_client, tmp_path
):
    cli.write(CONFIG, cluster(base_image))
    ok(cli("apply", "-auto-approve"))
    before = compute_show(cli)
    cluster_id = before["cluster_id"]
    nodes = [n["name"] for n in before["nodes"]]
    assert len(nodes) == 1, before

    assert "Removed compute.c" in ok(cli("state", "rm", "compute.c")).out
    assert resources(cli) == []
    assert running(docker_client, cluster_id) == nodes  # state rm leaves the cluster alone

    imported = ok(cli("import", "compute.c", cluster_id))
    assert "Import successful!" in imported.out, imported.out
    shown = ok(cli("state", "show", "compute.c")).out
    assert f'cluster_id   = "{cluster_id}"' in shown, shown
    assert f"{cluster_id}.json" in shown, shown  # its registry, kept in this folder
    after = compute_show(cli)
    assert after["address"] == "compute.c"
    assert [(n["name"], n["state"], n["container"]) for n in after["nodes"]] == [
        (nodes[0], "idle", "running")
    ], after
    assert (after["min_nodes"], after["max_nodes"]) == (1, 2)
    plan = ok(cli("plan", "--detailed-exitcode"))  # exit 2 if anything were planned
    assert "No changes." in plan.out, plan.out
    assert running(docker_client, cluster_id) == nodes  # adopted, not recreated

    again = failed(cli("import", "compute.c", cluster_id), "compute.c is already managed")
    assert again.err.count("Error:") == 1, again.err

    # A run on the adopted cluster uses its node.
    cli.write("src/hello.py", "print('hello from the adopted cluster', flush=True)\n")
    run = (
        'run "hello" {\n'
        "  compute    = compute.c\n"
        '  experiment = "cluster-import"\n'
        '  source_dir = "src"\n'
        '  script     = "hello.py"\n'
        "}\n"
    )
    cli.write(CONFIG, cluster(base_image) + run)
    plan = ok(cli("plan")).out
    assert "# compute.c" not in plan, plan  # nothing to do for the cluster itself
    ok(cli("apply", "-auto-approve"))
    shown_run = json.loads(ok(cli("runs", "show", "run.hello", "--json")).out)
    assert shown_run["status"] == "completed" and shown_run["exit_code"] == 0, shown_run
    assert "hello from the adopted cluster" in ok(cli("runs", "logs", "run.hello")).out
    assert running(docker_client, cluster_id) == nodes  # min_nodes = 1: the node served it

    ok(cli("destroy", "-auto-approve"))
    assert cluster_containers(docker_client, cluster_id) == {}
    assert not network_exists(docker_client, cluster_id)
    assert managed(docker_client, tmp_path) == []


def test_an_import_block_adopts_the_cluster_through_plan_and_apply(
    cli, base_image, docker_client, tmp_path
):
    cli.write(CONFIG, cluster(base_image))
    ok(cli("apply", "-auto-approve"))
    cluster_id = compute_show(cli)["cluster_id"]
    nodes = running(docker_client, cluster_id)
    ok(cli("state", "rm", "compute.c"))

    cli.write(CONFIG, cluster(base_image) + import_block(cluster_id))
    plan = ok(cli("plan")).out
    assert "# compute.c will be imported" in plan, plan
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in plan, plan
    assert resources(cli) == []  # plan records nothing
    applied = ok(cli("apply", "-auto-approve")).out
    assert "Apply complete! Resources: 1 imported, 0 added, 0 changed, 0 destroyed." in applied
    (recorded,) = resources(cli)
    assert recorded["address"] == "compute.c"
    assert recorded["values"]["cluster_id"] == cluster_id
    assert "No changes." in ok(cli("plan", "--detailed-exitcode")).out  # the block stays harmless
    assert running(docker_client, cluster_id) == nodes

    ok(cli("destroy", "-auto-approve"))
    assert cluster_containers(docker_client, cluster_id) == {}
    assert not network_exists(docker_client, cluster_id)


def test_bad_import_ids_are_one_error_naming_the_id_and_leave_state_as_it_was(
    cli, base_image, docker_client, tmp_path
):
    # min_nodes = 0: a network and a registry, no container, which is all import looks at.
    cli.write(CONFIG, cluster(base_image, min_nodes=0))
    ok(cli("apply", "-auto-approve"))
    cluster_id = compute_show(cli)["cluster_id"]
    other = cluster_block("example/other:1", 0, 2, name="d")
    cli.write(CONFIG, cluster(base_image, min_nodes=0) + other)
    state = resources(cli)

    def rejected(ident: str, *needles: str) -> None:
        result = failed(cli("import", "compute.d", ident), repr(ident), *needles)
        assert result.err.count("Error:") == 1, result.err
        assert resources(cli) == state

    rejected("tf-nope-000000", f"no Docker cluster labelled {CLUSTER_LABEL}=tf-nope-000000")
    rejected("Not A Cluster", "is not a cluster id")
    rejected(cluster_id, "is already managed by trainform as compute.c")

    # An import block with a bad id fails the plan the same way, and apply changes nothing.
    cli.write(
        CONFIG,
        cluster(base_image, min_nodes=0) + other + import_block("tf-nope-000000", "compute.d"),
    )
    for args in (("plan",), ("apply", "-auto-approve")):
        result = failed(cli(*args), "'tf-nope-000000'", "no Docker cluster labelled")
        assert result.err.count("Error:") == 1, result.err
        assert resources(cli) == state

    # Unmanaged, the cluster still cannot go under a block whose nodes would be different.
    ok(cli("state", "rm", "compute.c"))
    cli.write(CONFIG, cluster(base_image, min_nodes=0) + other)
    state = resources(cli)
    rejected(cluster_id, "node_image is", "'example/other:1' in the configuration")

    # A block that asks for more nodes than the cluster has adopts it and updates it in place.
    cli.write(CONFIG, cluster(base_image, min_nodes=0, max_nodes=3))
    ok(cli("import", "compute.c", cluster_id))
    plan = ok(cli("plan")).out
    assert "the cluster has max_nodes = 2: set it to 3" in plan, plan
    assert "Plan: 0 to add, 1 to change, 0 to destroy" in plan, plan
    ok(cli("apply", "-auto-approve"))
    assert compute_show(cli)["max_nodes"] == 3
    assert "No changes." in ok(cli("plan", "--detailed-exitcode")).out

    ok(cli("destroy", "-auto-approve"))
    assert not network_exists(docker_client, cluster_id)


def test_removed_with_destroy_false_forgets_the_cluster_and_leaves_its_nodes_running(
    cli, base_image, docker_client, tmp_path, remove_by_label
):
    cli.write(CONFIG, cluster(base_image))
    ok(cli("apply", "-auto-approve"))
    cluster_id = compute_show(cli)["cluster_id"]
    remove_by_label.append(cluster_id)  # if the test fails before the cluster is destroyed
    nodes = running(docker_client, cluster_id)
    assert len(nodes) == 1

    cli.write(CONFIG, "removed {\n  from = compute.c\n  lifecycle {\n    destroy = false\n  }\n}\n")
    plan = ok(cli("plan")).out
    assert "# compute.c will no longer be managed by trainform, but will not be destroyed" in plan
    assert "0 to destroy" in plan, plan
    ok(cli("apply", "-auto-approve"))
    assert resources(cli) == []
    assert running(docker_client, cluster_id) == nodes
    assert network_exists(docker_client, cluster_id)
    assert "No changes." in ok(cli("plan", "--detailed-exitcode")).out

    # Imported again, it is managed again: destroy removes it.
    cli.write(CONFIG, cluster(base_image))
    ok(cli("import", "compute.c", cluster_id))
    assert "No changes." in ok(cli("plan", "--detailed-exitcode")).out
    ok(cli("destroy", "-auto-approve"))
    assert cluster_containers(docker_client, cluster_id) == {}
    assert not network_exists(docker_client, cluster_id)
