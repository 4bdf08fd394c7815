"""A run's log on its way to a terminal: control sequences made inert (colour kept only when
asked), lines passed on in blocks whose size does not grow with the log, unfinished lines in
bounded pieces, and failure tails that are safe to print."""

from __future__ import annotations

import re

from trainform.cli.loglines import prefixed, shown
from trainform.runs.watch import MAX_LINE, TAIL_LINES, LogLine, NodeLog, neutralise

# What a hostile (or merely fancy) run may print, and what each must become.
OSC_TITLE = "\x1b]0;pwned title\x07"
CLEAR = "\x1b[2J\x1b[H"
CURSOR = "\x1b[5;10H\x1b[2A\x1b[K"
BELL = "\x07"
BACKSPACES = "rm -rf /\x08\x08\x08\x08\x08\x08\x08\x08ls -l   "
C1_CSI = "\u009b2J"  # an 8-bit CSI: a terminal that honours C1 clears the screen
RED = "\x1b[31mred\x1b[0m"
TRUECOLOUR = "\x1b[38;2;255;0;0mrgb\x1b[39m"


def controls_left(text: str) -> list[str]:
    """Control characters in ``text`` other than tab, newline and ESC of an SGR sequence."""
    without_sgr = re.sub("\x1b\\[[0-9;:]*m", "", text)
    return [c for c in without_sgr if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0]


def test_window_titles_screen_clears_and_cursor_moves_become_visible_text() -> None:
    for colour in (False, True):
        text = neutralise(OSC_TITLE + CLEAR + CURSOR + "after", colour)
        assert controls_left(text) == [], repr(text)
        assert "\x1b" not in text, repr(text)
        assert text == "␛]0;pwned title␇␛[2J␛[H␛[5;10H␛[2A␛[Kafter"


def test_bells_backspaces_and_c1_controls_are_shown_not_obeyed() -> None:
    assert neutralise(BELL + "ding") == "␇ding"
    # The text a backspace trick would hide stays readable.
    assert neutralise(BACKSPACES) == "rm -rf /␈␈␈␈␈␈␈␈ls -l   "
    assert neutralise(C1_CSI) == "␛[2J"
    assert neutralise("a\x7fb\x00c\x0bd\x0ce") == "a␡b␀c␋d␌e"
    assert neutralise("tab\tkept\nnewline kept") == "tab\tkept\nnewline kept"


def test_a_carriage_return_starts_a_new_line_instead_of_overwriting() -> None:
    assert neutralise("secret-token=abc\rprogress 50%") == "secret-token=abc\nprogress 50%"
    assert neutralise("windows line\r\nnext") == "windows line\nnext"


def test_colour_is_kept_only_when_asked() -> None:
    assert neutralise(RED + " " + TRUECOLOUR, colour=True) == RED + " " + TRUECOLOUR
    assert neutralise(RED + " " + TRUECOLOUR, colour=False) == "red rgb"
    # An SGR split from its ESC (as by a line cut in pieces) is not put back together.
    assert neutralise("\x1b", colour=True) + neutralise("[31m", colour=True) == "␛[31m"
    # Something that starts like colour but is not SGR is neutralised.
    assert neutralise("\x1b[31;1H", colour=True) == "␛[31;1H"


def test_shown_and_prefixed_lines_are_inert_and_reset_their_colour() -> None:
    hostile = LogLine(OSC_TITLE + "title\n" + RED + " and on\rover", rank=1, nodes=2)
    plain = prefixed("run.x", hostile, 10)
    assert plain.split("\n") == [
        "run.x[1]   | ␛]0;pwned title␇title",
        "run.x[1]   | red and on",
        "run.x[1]   | over",
    ]
    coloured = prefixed("run.x", hostile, 10, colour=True)
    assert controls_left(coloured) == [] and "␛]0;" in coloured
    # Colour does not run into the next line's prefix, nor past the last line.
    assert "\x1b[0m\nrun.x[1]   | " in coloured and coloured.endswith("\x1b[0m")
    assert shown(RED + "\x1b[1m bold left on", colour=True).endswith("\x1b[0m")
    assert shown("no colour", colour=True) == "no colour"


def feed_all(log: NodeLog, data: bytes, piece: int) -> list[LogLine]:
    out: list[str] = []
    for start in range(0, len(data), piece):
        log.feed(data[start : start + piece], out.append)
    log.flush(out.append)
    return out


def test_whole_lines_pass_as_blocks_no_bigger_than_what_was_read() -> None:
    data = b"".join(b"line %07d\n" % i for i in range(200_000))  # 2.6 MB
    blocks = feed_all(NodeLog(0, 1, 0), data, 1 << 20)
    assert len(blocks) <= 3  # one per piece read, not one per line
    assert all(len(b) <= (1 << 20) + MAX_LINE for b in blocks)  # a piece and a line's start
    assert "\n".join(blocks).split("\n") == [f"line {i:07d}" for i in range(200_000)]


def test_a_line_without_an_end_is_passed_in_bounded_pieces() -> None:
    log = NodeLog(0, 1, 0)
    out: list[str] = []
    for _ in range(40):  # 40 MiB and no newline: what is held never grows past MAX_LINE
        log.feed(b"z" * (1 << 20), out.append)
        assert len(log.partial) <= MAX_LINE
    log.feed(b"\nend\n", out.append)
    log.flush(out.append)
    assert all(len(piece) == MAX_LINE for piece in out[:-1])
    assert len(out[-1]) <= MAX_LINE + len("\nend")  # the line's last piece, and the next line
    assert "".join(out) == "z" * (40 << 20) + "\nend"


def test_a_failure_tail_holds_the_last_lines_made_inert() -> None:
    log = NodeLog(0, 1, 0)
    lines = [f"line {i}" for i in range(50)] + [OSC_TITLE + "boom", RED, "x" * 5000]
    feed_all(log, ("\n".join(lines) + "\n").encode(), 7)
    assert len(log.tail) == TAIL_LINES
    assert list(log.tail)[-3:] == ["␛]0;pwned title␇boom", "red", "x" * 1000 + "…"]
    assert all(controls_left(line) == [] for line in log.tail)


def test_raw_passes_the_bytes_unchanged() -> None:
    got: list[bytes] = []
    log = NodeLog(0, 1, 0, raw=got.append)
    data = (OSC_TITLE + CLEAR + "\r\n" + RED).encode() + b"\xff\xfe"
    assert feed_all(log, data, 3) == []
    assert b"".join(got) == data
