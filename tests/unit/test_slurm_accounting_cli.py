"""The accounting side of the ``slurm`` compute: sacctmgr argv and parsers run on outputs
captured from the test cluster's slurmdbd (Slurm 22.05, see slurm_outputs/README.md), the
plan-time account/QoS verdicts, and real sacct records mapped to run statuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.errors import ProviderError
from trainform.providers import slurm_cli as s
from trainform.providers.slurm import account_problems

OUT = Path(__file__).parent / "slurm_outputs"


def out(name: str) -> str:
    return (OUT / name).read_text()


def test_sacctmgr_argv_is_parsable2_without_header():
    assert s.sacctmgr_assoc_argv("ml") == [
        "sacctmgr",
        "-nP",
        "show",
        "assoc",
        "user=ml",
        "format=Cluster,Account,User,Partition,QOS",
    ]
    assert s.sacctmgr_qos_argv() == ["sacctmgr", "-nP", "show", "qos", "format=Name"]
    for bad in ("", "a b", "x,y", "-u", "a=b"):
        with pytest.raises(ProviderError, match="not a user name"):
            s.sacctmgr_assoc_argv(bad)


def test_associations_and_qos_from_real_sacctmgr():
    assocs = s.parse_sacctmgr_assoc(out("22.05_sacctmgr_assoc.out"))
    assert assocs == [
        s.Association("tfacct", "proj42", "root", "", ("high", "normal")),
        s.Association("tfacct", "root", "root", "", ("normal",)),
    ]
    assert s.parse_sacctmgr_assoc(out("22.05_sacctmgr_assoc_none.out")) == []
    assert s.parse_sacctmgr_qos(out("22.05_sacctmgr_qos.out")) == ["normal", "high"]


def test_sacctmgr_without_slurmdbd_is_recognised():
    assert s.sacctmgr_unsupported(out("22.05_sacctmgr_disabled.err"))
    assert s.sacctmgr_unsupported(out("22.05_sacct_disabled.err"))
    assert not s.sacctmgr_unsupported(out("22.05_sacctmgr_assoc.out"))


def test_sacctmgr_lines_of_another_form_are_refused():
    with pytest.raises(s.SlurmOutputError, match="5 were asked for"):
        s.parse_sacctmgr_assoc("tfacct|proj42|root\n")
    with pytest.raises(s.SlurmOutputError, match="names no account"):
        s.parse_sacctmgr_assoc("tfacct||root||normal\n")
    with pytest.raises(s.SlurmOutputError, match="1 were asked for"):
        s.parse_sacctmgr_qos("normal|extra\n")
    with pytest.raises(s.SlurmOutputError, match="more than"):
        s.parse_sacctmgr_qos("x" * (s.MAX_LINE_CHARS + 1))


FACTS = {"accounting": True, "user": "root", "accounts": ["proj42", "root"], "qos": ["high"]}


def test_unknown_account_or_qos_is_refused_naming_the_known_ones():
    assert account_problems(FACTS, "proj42", "high") == ([], [])
    assert account_problems(FACTS, "", "") == ([], [])
    refused, warnings = account_problems(FACTS, "nope", "turbo")
    assert warnings == []
    assert refused == [
        "unknown account 'nope' for user 'root' on this Slurm cluster (known: proj42, root)",
        "unknown qos 'turbo' for user 'root' on this Slurm cluster (known: high)",
    ]


def test_without_accounting_an_account_is_a_warning_not_a_refusal():
    facts = {"accounting": False, "user": "root", "accounts": None, "qos": None}
    assert account_problems(facts, "proj42", "") == (
        [],
        ["cannot check account 'proj42' (no accounting storage)"],
    )
    failed = {**FACTS, "accounts": None, "qos": None, "accounting_error": "sacctmgr exited 1"}
    assert account_problems(failed, "", "high") == (
        [],
        ["cannot check qos 'high' (sacctmgr exited 1)"],
    )


def test_real_sacct_records_of_ended_jobs():
    """Jobs 1-4 of the accounting cluster: `true`, `exit 3`, `sleep` past --time=0:01, and
    `sleep` cancelled (see slurm_outputs/README.md)."""
    records = s.parse_sacct(out("22.05_sacct_records.out"))
    statuses = {i: s.run_status(s.sacct_job(records, i)) for i in ("1", "2", "3", "4")}
    assert statuses["1"] == ("completed", "")
    assert statuses["2"][0] == "failed" and "exit code 3" in statuses["2"][1]
    assert statuses["3"][0] == "timed_out"
    assert statuses["4"] == ("canceled", "CANCELLED by uid 0")
