"""Multi-node runs: the rendezvous variables each node's launcher gets, and one status for
the run from the statuses of its nodes (shared by every compute type that runs nodes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainform.providers.base import TERMINAL


def rendezvous_port(run_id: str) -> int:
    """A port for rank 0 to listen on, the same for every node of a run."""
    return 29500 + (sum(run_id.encode()) % 2000)


def node_env(rank: int, addresses: Sequence[str], port: int) -> dict[str, str]:
    """The environment variables of the node of rank ``rank`` (``addresses`` in rank order)."""
    return {
        "TRAINFORM_NODE_RANK": str(rank),
        "TRAINFORM_NUM_NODES": str(len(addresses)),
        "TRAINFORM_NODE_IPS": ",".join(addresses),
        "MASTER_ADDR": addresses[0],
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(len(addresses)),
        "NODE_RANK": str(rank),
    }


def combine(
    names: Sequence[str], statuses: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """The run's status from its nodes' (rank order), and whether the nodes still going must
    be stopped because another one failed. The run completes when every node completes and
    fails, naming the node, when one fails: the first that failed by itself, not one that
    was stopped because another failed. ``nodes`` lists each node's ``name``, ``status``
    and ``exit_code``, so a reader can tell which ranks failed."""
    head = dict(statuses[0])
    head["nodes"] = [
        {"name": name, "status": st.get("status"), "exit_code": st.get("exit_code")}
        for name, st in zip(names, statuses)
    ]
    failed = [
        (name, st)
        for name, st in zip(names, statuses)
        if st.get("status") in TERMINAL and st.get("status") != "completed"
    ]
    if failed:
        # The ranks stopped because of this failure end "canceled" (and may do so first).
        name, st = next(((n, s) for n, s in failed if s.get("status") != "canceled"), failed[0])
        if any(s.get("status") not in TERMINAL for s in statuses):
            return {**head, "status": "running", "message": f"node {name} {st.get('status')}"}, True
        head.update(
            status=st.get("status"),
            exit_code=st.get("exit_code"),
            message=f"node {name}: {st.get('message') or st.get('status')}",
        )
        return head, False
    if all(s.get("status") == "completed" for s in statuses):
        return head, False
    if head.get("status") in TERMINAL:
        head["status"] = "running"  # rank 0 is done; the others are not yet
    return head, False


def failing_ranks(status: dict[str, Any]) -> list[int] | None:
    """The ranks of a finished multi-node run (its combined ``status``) that failed by
    themselves (not completed, not stopped because another failed); every rank that did
    not complete when all of them were canceled; None when the nodes' statuses are not
    known."""
    nodes = status.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return None
    ended = [
        rank
        for rank, node in enumerate(nodes)
        if isinstance(node, dict) and node.get("status") not in ("completed", None)
    ]
    own = [r for r in ended if nodes[r].get("status") != "canceled"]
    return own or ended
