"""Big logs over SSH, against a real OpenSSH server on 127.0.0.1 (as tfuser): `apply` shows
every line of a 96 MiB log and collects it whole (byte for byte what the host has), in memory
that does not grow with the log; the transport keeps what a command prints within a stated
bound (an error past it, never a cut), and reads files of any size as a stream, a piece at a
time, up to the size they had when the stream opened.

Memory is the trainform process's own peak RSS (VmHWM), compared with the same apply of a
1 MiB log; nothing is timed (bench/log_follow.py has the figures).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from big_log import BIG_MIB, MIB, SCRIPT, assert_shown, assert_whole, digest, measured, tail
from helpers import ok
from test_ssh_compute import (  # noqa: F401 (reap_runs: an autouse fixture for this module too)
    ENVIRONMENT,
    compute_block,
    reap_runs,
    run_block,
)
from test_ssh_transport import target

from trainform.errors import ProviderError
from trainform.remote.ssh import SSHConnection
from trainform.runs.watch import DRAIN_LIMIT

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, UserKey


def test_a_big_log_is_shown_and_collected_whole_over_ssh_in_bounded_memory(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, tmp_path: Path
) -> None:
    assert BIG_MIB * MIB > DRAIN_LIMIT + 16 * MIB
    config = compute_block(sshd, f"{remote_tmp}/tf", key=user_key) + ENVIRONMENT
    cli.write("src/big.py", SCRIPT)
    cli.write("main.train.hcl", config + run_block("big", "big.py", env={"MIB": "1"}))
    small_rss = measured(cli, tmp_path / "small.out", "apply", "-auto-approve")
    assert_shown(tmp_path / "small.out", 1)

    cli.write("main.train.hcl", config + run_block("big", "big.py", env={"MIB": str(BIG_MIB)}))
    big_rss = measured(cli, tmp_path / "big.out", "apply", "-auto-approve")
    assert_shown(tmp_path / "big.out", BIG_MIB)
    assert b"run.big: Completed after" in tail(tmp_path / "big.out")
    assert big_rss - small_rss < 24 * MIB, (small_rss, big_rss)

    # The collected log is the host's, byte for byte (not cut, not held in memory).
    run_id = ok(cli("runs", "show", "run.big", "--json")).out.split('"id": "', 1)[1].split('"')[0]
    remote = next(Path(remote_tmp).glob(f"tf/runs/{run_id}/output.log"))
    collected = next(cli.cwd.glob(f"**/runs/{run_id}/output.log"))
    assert_whole(collected, BIG_MIB)
    assert digest(collected) == digest(remote)

    measured(cli, tmp_path / "raw.out", "runs", "logs", "run.big", "--raw")
    assert digest(tmp_path / "raw.out") == digest(remote)


def test_command_output_is_bounded_and_files_are_read_as_streams_in_pieces(
    sshd: SSHServer, user_key: UserKey, remote_tmp: str, tmp_path: Path
) -> None:
    path = Path(remote_tmp) / "growing.log"
    content = hashlib.sha256(b"seed").digest() * (5 * MIB // 32) + b"tail"
    path.write_bytes(content)
    path.chmod(0o644)

    with SSHConnection(target(sshd, user_key)) as conn:
        # More output than the command may keep: an error that says so, not a cut.
        with pytest.raises(ProviderError, match="more than 1048576 bytes"):
            conn.run(["head", "-c", str(8 * MIB), "/dev/zero"], limit=MIB)
        assert len(conn.run(["head", "-c", str(MIB), "/dev/zero"], limit=MIB)[1]) == MIB

        # A file read from an offset, a piece of at most 1 MiB at a time, up to the size it
        # had when the stream opened (its first piece has come, so it has); what was added
        # later is for the next stream.
        stream = conn.open_file(str(path), 1000)
        pieces = [stream.read(MIB)]
        with path.open("ab") as fh:
            fh.write(b" and more")
        while piece := stream.read(MIB):
            pieces.append(piece)
        assert [len(p) for p in pieces[:-1]] == [MIB] * (len(pieces) - 1)
        assert b"".join(pieces) == content[1000:] and stream.offset == len(content)
        assert conn.open_file(str(path), stream.offset).read(MIB) == b" and more"
        assert conn.open_file(f"{remote_tmp}/missing.log").read(MIB) == b""

        # A file downloaded whole; a missing one as an empty file.
        assert conn.download_file(str(path), tmp_path / "copy.log") == len(content) + 9
        assert (tmp_path / "copy.log").read_bytes() == content + b" and more"
        assert conn.download_file(f"{remote_tmp}/missing.log", tmp_path / "none.log") == 0
        assert (tmp_path / "none.log").read_bytes() == b""
        assert not list(tmp_path.glob(".*.part"))
