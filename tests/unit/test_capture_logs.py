"""The capture sources that read a run's output (trainform/capture/logs.py), fed bytes as the
launcher feeds them: regex metrics over one line or a window of lines (a value split over two
or three lines, counted once however many windows hold it; \\r\\n; very long lines; chunks cut
anywhere), the checks on ``metrics`` entries, and what azureml-core's offline run prints
(metrics, tags, uploads copied into the outputs with names and links kept inside), read with
``ast.literal_eval`` and limits. The Azure ML lines are the ones azureml-core 1.61 prints; the
end-to-end tests (tests/e2e/test_printed_metrics.py) run the real library."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from trainform.capture import Stream
from trainform.capture.logs import (
    MAX_PATTERN_LINE,
    MAX_POINTS,
    AzureMLOffline,
    LogPatterns,
    PatternError,
    compile_pattern,
)
from trainform.runs.spec import check_metric_patterns


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def points(path: Path, name: str | None = None) -> list[tuple[str, float | None, int]]:
    return [
        (r["name"], r["value"], r["step"])
        for r in records(path)
        if r["kind"] == "metric" and (name is None or r["name"] == name)
    ]


def scrape(tmp_path: Path, patterns: dict[str, Any], *chunks: bytes) -> list[tuple]:
    stream = tmp_path / "metrics.jsonl"
    source = LogPatterns(Stream(stream), patterns)
    for chunk in chunks:
        source.feed(chunk)
    source.finish()
    return points(stream)


def every_split(data: bytes) -> list[list[bytes]]:
    """``data`` cut in two at every offset, and byte by byte."""
    return [[data[:i], data[i:]] for i in range(len(data) + 1)] + [
        [data[i : i + 1] for i in range(len(data))]
    ]


# -- regex metrics over several lines


ACC2 = {"acc": {"pattern": r"Accuracy:\n([0-9.]+)", "lines": 2}}


def test_a_value_on_the_next_line_is_found_wherever_the_chunks_break(tmp_path: Path) -> None:
    data = b"epoch 1\nAccuracy:\n0.5\nnoise\nAccuracy:\r\n0.75\r\nAccuracy:\n0.9"
    for chunks in every_split(data):
        (tmp_path / "metrics.jsonl").unlink(missing_ok=True)
        assert scrape(tmp_path, ACC2, *chunks) == [
            ("acc", 0.5, 0),
            ("acc", 0.75, 1),
            ("acc", 0.9, 2),
        ], chunks


def test_a_value_over_three_lines(tmp_path: Path) -> None:
    pattern = {"f1": {"pattern": r"^F1\n-+\n([0-9.]+)$", "lines": 3}}
    found = scrape(tmp_path, pattern, b"F1\n-----\n0.81\nF1\n---\nnot a number\nF1\n--\n0.83\n")
    assert found == [("f1", 0.81, 0), ("f1", 0.83, 1)]


def test_a_window_seen_again_counts_its_value_once(tmp_path: Path) -> None:
    # lines = 4 keeps "Accuracy:\n0.5" in the window for three more lines: still one point.
    pattern = {"acc": {"pattern": r"Accuracy:\n([0-9.]+)", "lines": 4}}
    found = scrape(tmp_path, pattern, b"Accuracy:\n0.5\na\nb\nc\nAccuracy:\n0.6\nd\n")
    assert found == [("acc", 0.5, 0), ("acc", 0.6, 1)]


def test_the_match_that_ends_in_the_newest_line_is_the_one_taken(tmp_path: Path) -> None:
    # The window "acc\n1\nacc\n2" holds two matches; the older was counted already.
    pattern = {"acc": {"pattern": r"acc\n(\d)", "lines": 4}}
    assert scrape(tmp_path, pattern, b"acc\n1\nacc\n2\n") == [("acc", 1.0, 0), ("acc", 2.0, 1)]


def test_blank_lines_do_not_count_as_lines(tmp_path: Path) -> None:
    found = scrape(tmp_path, ACC2, b"Accuracy:\n\n\r\n0.5\n")
    assert found == [("acc", 0.5, 0)]


def test_one_line_and_several_line_patterns_together(tmp_path: Path) -> None:
    patterns = {"loss": "loss=([0-9.]+)", **ACC2}
    found = scrape(tmp_path, patterns, b"loss=0.3\nAccuracy:\n0.7 loss=0.2\n")
    assert found == [("loss", 0.3, 0), ("loss", 0.2, 1), ("acc", 0.7, 0)]


def test_a_one_line_pattern_never_sees_two_lines(tmp_path: Path) -> None:
    assert scrape(tmp_path, {"acc": r"Accuracy:\s*([0-9.]+)"}, b"Accuracy:\n0.5\n") == []


def test_very_long_lines_are_cut_not_held(tmp_path: Path) -> None:
    long = b"x" * (3 * MAX_PATTERN_LINE + 5)
    data = long + b" loss=0.5\n" + long + b"\nAccuracy:\n0.25\n"
    found = scrape(
        tmp_path,
        {"loss": "loss=([0-9.]+)", **ACC2},
        *[data[i : i + 4096] for i in range(0, len(data), 4096)],
    )
    assert found == [("loss", 0.5, 0), ("acc", 0.25, 0)]


def test_a_group_that_is_not_a_number_is_skipped(tmp_path: Path) -> None:
    assert scrape(tmp_path, {"acc": {"pattern": r"acc\n(\S+)", "lines": 2}}, b"acc\nhigh\n") == []


# -- what a metrics entry may be


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("acc=([0-9.]+", "metrics.acc: invalid regular expression"),
        ("acc=[0-9.]+", "metrics.acc: the regular expression needs exactly one group, has 0"),
        ({"pattern": "(a)(b)", "lines": 2}, "needs exactly one group, has 2"),
        ({"pattern": "a(.)", "lines": 0}, "lines must be a whole number from 1 to 10, got 0"),
        ({"pattern": "a(.)", "lines": 11}, "from 1 to 10, got 11"),
        ({"pattern": "a(.)", "lines": 1.5}, "got 1.5"),
        ({"pattern": "a(.)", "lines": "2"}, "got '2'"),
        ({"pattern": "a(.)", "lines": True}, "got True"),
        ({"lines": 2}, '"pattern" is required'),
        ({"pattern": "a(.)", "line": 2}, "unknown key 'line'"),
        ({"pattern": ["a(.)"]}, "the pattern must be a string"),
    ],
)
def test_bad_entries_are_named(entry: Any, problem: str) -> None:
    with pytest.raises(PatternError, match=r"^metrics\.acc: ") as raised:
        compile_pattern("acc", entry)
    assert problem in str(raised.value)
    assert [problem in p for p in check_metric_patterns({"acc": entry})] == [True]


def test_good_entries() -> None:
    assert compile_pattern("a", "a=(.)")[1] == 1
    assert compile_pattern("a", {"pattern": "a=(.)"})[1] == 1
    assert compile_pattern("a", {"pattern": "a\n(.)", "lines": 10})[1] == 10
    assert compile_pattern("a", {"pattern": "a\n(.)", "lines": 2.0})[1] == 2  # JSON's 2.0
    assert check_metric_patterns({"a": "a=(.)", "b": {"pattern": "b\n(.)", "lines": 2}}) == []


# -- Azure ML offline runs

# What azureml-core 1.61's _OfflineRun prints (azureml/core/run.py), for the calls named.
AZUREML = b"""\
[START] Run OfflineRun_1 context
Attempted to log scalar metric Accuracy:
0.5
Attempted to log scalar metric Accuracy:
0.75
Attempted to log scalar metric Kernel type:
rbf
Attempted to log scalar metric numpy 2:
0.25
Attempted to log scalar metric flag:
True
Attempted to log list metric losses:
[1.0, 0.5, nan, inf]
Attempted to log list metric wrapped:
[0.         0.25       0.5
 0.75       nan]
Attempted to log list metric numpy2:
[np.float64(0.1), np.int64(2)]
Attempted to log list metric summarised:
[0.    0.001 0.002 ... 0.997 0.998 0.999]
Attempted to log row metric per epoch:
{'epoch': 1, 'acc': 0.9, 'note': 'x'}
Attempted to log row metric per epoch:
{'epoch': 2, 'acc': 0.95}
Attempted to log table metric tab:
{'x': [1, 2], 'y': array([3., 4.]), 'z': 5}
Attempted to add tag team with value vision
Attempted to add tag flag with value None
Attempted to add tag x with value y with value z
Attempted to set tags {'a': '1', 'b': 2}
Attempted to add properties {'owner': 'me'}
Attempted to log image metric plot:
<module 'matplotlib.pyplot'>
Attempted to log confusion_matrix metric cm:
{'schema_type': 'confusion_matrix', 'data': {'matrix': [[1, 0], [0, 1]]}}
Run failed with error code None:
Attempted to flush run with id OfflineRun_1
[STOP] Run OfflineRun_1 context
"""


class Azure:
    """An AzureMLOffline source over a run folder (``cwd``) with an outputs folder."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path / "src"
        self.outputs = self.cwd / "outputs"
        self.outputs.mkdir(parents=True)
        self.stream = tmp_path / "metrics.jsonl"
        self.notes: list[str] = []
        self.source = AzureMLOffline(
            Stream(self.stream), self.cwd, self.outputs, "1.61.0", self.notes.append
        )

    def feed(self, *chunks: bytes) -> Azure:
        for chunk in chunks:
            self.source.feed(chunk)
        self.source.finish()
        return self

    def tags(self) -> dict[str, str]:
        return {r["name"]: r["value"] for r in records(self.stream) if r["kind"] == "tag"}

    def outputs_found(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.outputs)): p.read_text()
            for p in sorted(self.outputs.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }


def test_what_the_offline_run_prints_becomes_metrics_and_tags(tmp_path: Path) -> None:
    azure = Azure(tmp_path).feed(AZUREML)
    found = points(azure.stream)
    assert [p for p in found if p[0] == "Accuracy"] == [("Accuracy", 0.5, 0), ("Accuracy", 0.75, 1)]
    assert ("numpy 2", 0.25, 0) in found
    assert [p for p in found if p[0] == "losses"] == [
        ("losses", 1.0, 0),
        ("losses", 0.5, 1),
        ("losses", None, 2),
        ("losses", None, 3),
    ]
    nonfinite = [r.get("nonfinite") for r in records(azure.stream) if r.get("name") == "losses"]
    assert nonfinite == [None, None, "nan", "inf"]
    assert [v for n, v, _ in found if n == "wrapped"] == [0.0, 0.25, 0.5, 0.75, None]
    assert [v for n, v, _ in found if n == "numpy2"] == [0.1, 2.0]
    assert [p for p in found if p[0].startswith("per epoch/")] == [
        ("per epoch/epoch", 1.0, 0),
        ("per epoch/acc", 0.9, 0),
        ("per epoch/epoch", 2.0, 1),
        ("per epoch/acc", 0.95, 1),
    ]
    assert [p for p in found if p[0].startswith("tab/")] == [
        ("tab/x", 1.0, 0),
        ("tab/x", 2.0, 1),
        ("tab/y", 3.0, 0),
        ("tab/y", 4.0, 1),
    ]
    names = {n for n, _, _ in found}
    assert not names & {"Kernel type", "flag", "summarised", "plot", "cm", "per epoch/note"}
    assert all(r["source"] == "azureml" for r in records(azure.stream))
    assert azure.tags() == {
        "team": "vision",
        "flag": "",
        "x": "y with value z",  # the first " with value " splits
        "a": "1",
        "b": "2",
        "owner": "me",
    }
    notes = "\n".join(azure.notes)
    for expected in (
        "Azure ML metric Kernel type is not a number",
        "Azure ML metric flag is not a number",
        "Azure ML metric summarised could not be read as a list",
        "Azure ML metric per epoch/note is not a number",
        "Azure ML metric tab/z is not a list",
        "Azure ML log_image (plot) is not captured",
        "Azure ML log_confusion_matrix (cm) is not captured",
    ):
        assert expected in notes, notes
    assert len(azure.notes) == 7, notes


def test_any_chunk_boundaries_give_the_same_stream(tmp_path: Path) -> None:
    whole = Azure(tmp_path / "whole").feed(AZUREML)
    expected = [
        (r["kind"], r["name"], r.get("value"), r.get("step")) for r in records(whole.stream)
    ]
    for size in (1, 2, 3, 7, 64):
        azure = Azure(tmp_path / f"by{size}")
        azure.feed(*[AZUREML[i : i + size] for i in range(0, len(AZUREML), size)])
        got = [(r["kind"], r["name"], r.get("value"), r.get("step")) for r in records(azure.stream)]
        assert got == expected, size
        assert azure.notes == whole.notes


def test_crlf_and_a_last_line_without_a_break(tmp_path: Path) -> None:
    azure = Azure(tmp_path).feed(
        b"Attempted to log scalar metric a:\r\n1.5\r\nAttempted to log scalar metric a:\r\n2"
    )
    assert points(azure.stream) == [("a", 1.5, 0), ("a", 2.0, 1)]


def test_a_value_cut_short_by_the_next_call_is_dropped(tmp_path: Path) -> None:
    # log_list of a string with an open bracket, then another call: the call is still read.
    azure = Azure(tmp_path).feed(
        b"Attempted to log list metric a:\n[1, 2\nAttempted to log scalar metric b:\n3\n"
    )
    assert points(azure.stream) == [("b", 3.0, 0)]
    assert azure.notes == ["Azure ML metric a could not be read as a list: not captured"]


def test_many_points_in_one_call_are_kept_up_to_the_limit(tmp_path: Path) -> None:
    values = ", ".join(str(i / 7) for i in range(MAX_POINTS + 10))
    azure = Azure(tmp_path).feed(f"Attempted to log list metric big:\n[{values}]\n".encode())
    found = points(azure.stream)
    assert len(found) == MAX_POINTS and found[-1][2] == MAX_POINTS - 1
    assert any("the first 100000 are kept" in n for n in azure.notes), azure.notes


def test_a_value_too_long_to_read_is_a_note(tmp_path: Path) -> None:
    lines = "".join(f" {i}.\n" for i in range(3000))
    azure = Azure(tmp_path).feed(
        f"Attempted to log list metric huge:\n[{lines}]\nAttempted to log scalar metric b:\n1\n".encode()
    )
    assert points(azure.stream) == [("b", 1.0, 0)]
    assert "Azure ML list huge: the value is longer than 2000 lines" in azure.notes[0]


def test_nothing_is_evaluated(tmp_path: Path) -> None:
    evil = b"__import__('os').system('touch pwned')"
    azure = Azure(tmp_path).feed(
        b"Attempted to log list metric a:\n[" + evil + b"]\n"
        b"Attempted to set tags {'a': " + evil + b"}\n"
        b"Attempted to log row metric r:\n{'x': (lambda: 1)()}\n"
    )
    assert not (azure.cwd / "pwned").exists() and not Path("pwned").exists()
    assert points(azure.stream) == [] and azure.tags() == {}
    assert len(azure.notes) == 3, azure.notes


def test_uploads_are_copied_into_the_outputs(tmp_path: Path) -> None:
    azure = Azure(tmp_path)
    data = azure.cwd / "data"
    (data / "deep").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "b.txt").write_text("b")
    (data / "deep" / "c.txt").write_text("c")
    (azure.outputs / "model.pkl").write_text("model")
    azure.feed(
        b"Attempted to track file model at best.txt at data/a.txt\n"
        b"Attempted to track file outputs/renamed.txt at data/b.txt\n"
        b"Attempted to track file outputs/model.pkl at ./outputs/model.pkl\n"
        b"Attempted to track files ['f1', 'sub/f2'] at ['data/a.txt', 'data/b.txt'] with "
        b"timeout Nones\n"
        b"Attempted to track folder tree at data\n"
    )
    assert azure.outputs_found() == {
        "model at best.txt": "a",
        "renamed.txt": "b",
        "model.pkl": "model",
        "f1": "a",
        "sub/f2": "b",
        "tree/a.txt": "a",
        "tree/b.txt": "b",
        "tree/deep/c.txt": "c",
    }
    assert azure.notes == []


def test_uploads_stay_inside_the_outputs_and_the_run_folder(tmp_path: Path) -> None:
    azure = Azure(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (azure.cwd / "ok.txt").write_text("ok")
    (azure.cwd / "leak").symlink_to(secret)
    (azure.cwd / "folder").mkdir()
    (azure.cwd / "folder" / "leak").symlink_to(secret)
    (azure.cwd / "folder" / "fine.txt").write_text("fine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (azure.outputs / "linked").symlink_to(elsewhere)
    azure.feed(
        b"Attempted to track file ../escape.txt at ok.txt\n"
        b"Attempted to track file /abs.txt at ok.txt\n"
        b"Attempted to track file outputs at ok.txt\n"
        b"Attempted to track file linked/x.txt at ok.txt\n"
        b"Attempted to track file leaked at leak\n"
        b"Attempted to track file direct at " + str(secret).encode() + b"\n"
        b"Attempted to track file missing at nowhere.txt\n"
        b"Attempted to track file stream at <_io.BufferedReader name='ok.txt'>\n"
        b"Attempted to track file dir at folder\n"
        b"Attempted to track folder tree at folder\n"
    )
    assert azure.outputs_found() == {"tree/fine.txt": "fine"}
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists() and not (azure.cwd / "escape.txt").exists()
    notes = "\n".join(azure.notes)
    assert notes.count("is not a relative path inside the outputs") == 3, notes
    assert "linked in the outputs is not a folder" in notes
    assert notes.count("is outside the run's folder") == 3, notes  # leak, direct, tree/leak
    assert "nowhere.txt is not a file" in notes
    assert "<_io.BufferedReader name='ok.txt'> is not a file" in notes
    assert "folder is not a file" in notes


def test_an_outputs_folder_replaced_by_a_link_gets_nothing(tmp_path: Path) -> None:
    azure = Azure(tmp_path)
    (azure.cwd / "ok.txt").write_text("ok")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    azure.outputs.rmdir()
    azure.outputs.symlink_to(elsewhere)
    azure.feed(b"Attempted to track file a.txt at ok.txt\nAttempted to track file b at ok.txt\n")
    assert list(elsewhere.iterdir()) == []
    assert azure.notes == ["Azure ML upload: the outputs folder is a link; nothing copied"]


def test_a_copy_that_fails_is_a_note(tmp_path: Path) -> None:
    azure = Azure(tmp_path)
    (azure.cwd / "ok.txt").write_text("ok")
    (azure.outputs / "taken").mkdir()
    (azure.outputs / "plain").write_text("x")
    azure.feed(
        b"Attempted to track file taken at ok.txt\n"
        b"Attempted to track file plain/x.txt at ok.txt\n"
        b"Attempted to track file fine.txt at ok.txt\n"
    )
    assert azure.outputs_found() == {"plain": "x", "fine.txt": "ok"}
    assert len(azure.notes) == 2, azure.notes
    if os.geteuid() != 0:  # root copies into read-only folders anyway
        (azure.outputs / "ro").mkdir()
        (azure.outputs / "ro").chmod(0o500)
        azure.source.feed(b"Attempted to track file ro/x.txt at ok.txt\n")
        assert "not copied" in azure.notes[-1]


def test_notes_are_bounded(tmp_path: Path) -> None:
    data = b"".join(f"Attempted to log scalar metric s{i}:\nword\n".encode() for i in range(500))
    azure = Azure(tmp_path).feed(data)
    assert len(azure.notes) == 51
    assert "more than 50 notes" in azure.notes[-1]
