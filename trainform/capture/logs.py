"""Capture sources that read the run's output: the run's ``metrics`` regular expressions, and
what azureml-core's offline run prints. Standard library only, Python >= 3.8 (runs on targets).

Both read the output as lines: a line ends at ``\\n``, ``\\r\\n`` or ``\\r`` (a progress bar's
redraw), blank lines are left out, bytes that are not UTF-8 become U+FFFD, and a line longer
than the source's limit is cut there (what follows is the next line).
"""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
import time
import tokenize
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from re import Pattern
from typing import Any

from trainform.capture import MAX_NAME, Source, Stream

# The longest window a multi-line pattern may ask for (``lines = N``).
MAX_PATTERN_LINES = 10
# A longer output line is cut there before the regexes see it (characters, roughly).
MAX_PATTERN_LINE = 1 << 16


class PatternError(ValueError):
    """A ``metrics`` entry of a spec that cannot be used (the message names it)."""


def compile_pattern(name: str, entry: Any) -> tuple[Pattern[str], int]:
    """One ``metrics`` entry as (regex, lines). ``entry`` is a regular expression with exactly
    one group, or ``{"pattern": regex, "lines": N}`` with N a whole number from 1 to
    :data:`MAX_PATTERN_LINES` (default 1). Raises :class:`PatternError` saying what is wrong
    with ``metrics.NAME``. ``^`` and ``$`` match at every line's start and end."""
    where = f"metrics.{name}"
    lines: Any = 1
    if isinstance(entry, dict):
        unknown = sorted(str(k) for k in entry if k not in ("pattern", "lines"))
        if unknown:
            raise PatternError(
                f"{where}: unknown key {', '.join(map(repr, unknown))}; an entry is a regular "
                'expression or { pattern = "...", lines = N }'
            )
        if "pattern" not in entry:
            raise PatternError(f'{where}: "pattern" is required (a regular expression)')
        pattern = entry["pattern"]
        lines = entry.get("lines", 1)
    else:
        pattern = entry
    if not isinstance(pattern, str):
        raise PatternError(f"{where}: the pattern must be a string (a regular expression)")
    if isinstance(lines, float) and lines.is_integer():
        lines = int(lines)
    if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= MAX_PATTERN_LINES:
        raise PatternError(
            f"{where}: lines must be a whole number from 1 to {MAX_PATTERN_LINES}, got {lines!r}"
        )
    try:
        regex = re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise PatternError(f"{where}: invalid regular expression: {exc}") from None
    if regex.groups != 1:
        raise PatternError(
            f"{where}: the regular expression needs exactly one group, has {regex.groups}"
        )
    return regex, lines


def compile_patterns(metrics: dict[str, Any]) -> dict[str, tuple[Pattern[str], int]]:
    """The spec's ``metrics`` compiled (:func:`compile_pattern`); raises :class:`PatternError`
    naming the first bad one."""
    return {str(name): compile_pattern(str(name), entry) for name, entry in metrics.items()}


class Lines:
    """Output bytes, arriving with any boundaries, as complete non-blank lines, each cut into
    pieces of at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending: list[bytes] = []  # the unfinished line, in the pieces it came in
        self.size = 0

    def feed(self, data: bytes) -> list[str]:
        pieces = re.split(rb"[\r\n]", data)
        last = pieces.pop()
        if pieces:
            pieces[0] = b"".join([*self.pending, pieces[0]])
            self.pending, self.size = [], 0
        self.pending.append(last)
        self.size += len(last)
        if self.size > self.limit:  # a very long line: pass on its whole pieces
            line = b"".join(self.pending)
            whole = len(line) - len(line) % self.limit
            pieces.append(line[:whole])
            self.pending, self.size = [line[whole:]], len(line) - whole
        return self._decode(pieces)

    def rest(self) -> list[str]:
        """The last line, when the output did not end with a line break."""
        rest, self.pending, self.size = b"".join(self.pending), [], 0
        return self._decode([rest])

    def _decode(self, lines: list[bytes]) -> list[str]:
        return [
            line[i : i + self.limit].decode("utf-8", "replace")
            for line in lines
            for i in range(0, len(line), self.limit)
        ]


class LogPatterns(Source):
    """Output lines that match a run's ``metrics`` regexes, as metric points (step: how many
    values of that metric were seen before).

    A pattern with ``lines = N`` is searched in the newest N lines joined with ``\\n``, each
    time a line arrives; a match counts only when it ends in the newest line (or in the line
    break before it), so a value is counted once however many windows hold it. The first
    such match of a window is the one taken, as a one-line pattern takes a line's first."""

    def __init__(self, stream: Stream, patterns: dict[str, Any]) -> None:
        self.stream = stream
        self.patterns = compile_patterns(patterns)
        self.counts = {name: 0 for name in self.patterns}
        self.lines = Lines(MAX_PATTERN_LINE)
        self.window: deque[str] = deque(
            maxlen=max((n for _, n in self.patterns.values()), default=1)
        )

    def feed(self, data: bytes) -> None:
        self._scrape(self.lines.feed(data))

    def finish(self) -> None:
        self._scrape(self.lines.rest())

    def _scrape(self, lines: list[str]) -> None:
        for line in lines:
            self.window.append(line)
            for name, (regex, size) in self.patterns.items():
                value = self._value(regex, size)
                if value is None:
                    continue
                self.stream.metric(name, value, self.counts[name], time.time(), "log")
                self.counts[name] += 1
        self.stream.flush()

    def _value(self, regex: Pattern[str], size: int) -> float | None:
        recent = [self.window[-1]] if size == 1 else list(self.window)[-size:]
        text = "\n".join(recent)
        newest = len(text) - len(recent[-1])
        for match in regex.finditer(text):
            if match.end() < newest:
                continue  # ended in an older line: counted when that line was the newest
            try:
                return float(match.group(1))
            except (TypeError, ValueError):
                return None
        return None


# -- Azure ML v1 (azureml-core) offline runs ------------------------------------------------------

# azureml-core's _OfflineRun (Run.get_context() outside Azure ML) prints what it is asked to
# log; these are its lines (azureml/core/run.py, 1.x).
_LOG = re.compile(r"Attempted to log (\w+) metric (.+):")
_TAG = re.compile(r"Attempted to add tag (.+?) with value (.*)")
_TAGS = re.compile(r"Attempted to (set tags|add properties) (\{.*\})")
_FILE = re.compile(r"Attempted to track file (.+)")
_FILES = re.compile(r"Attempted to track files (.+) with timeout (.*)s")
_FOLDER = re.compile(r"Attempted to track folder (.+)")
_ATTEMPT = "Attempted to "

# Limits on what a value may take: its printed text (characters, over all its lines), its
# lines (numpy wraps arrays), the points one call becomes, the files one folder becomes.
MAX_VALUE_TEXT = 4 << 20
MAX_VALUE_LINES = 2000
MAX_POINTS = 100_000
MAX_FOLDER_FILES = 10_000
# Notes one run's log gets from this source at most (each kind of problem once).
MAX_NOTES = 50

# Types whose values are not numbers trainform keeps (images, plots, matrices).
NOT_CAPTURED = {
    "image": "log_image",
    "residual": "log_residuals",
    "predictions": "log_predictions",
    "accuracy_table": "log_accuracy_table",
    "confusion_matrix": "log_confusion_matrix",
}
_NAN = "\x00nan"  # what a bare nan becomes inside a parsed value


class AzureMLOffline(Source):
    """What azureml-core's offline run (``Run.get_context()`` outside Azure ML) prints, turned
    into the run's stream (source ``"azureml"``):

    - ``run.log(name, number)``: a point of ``name`` (step: how many came before);
      ``run.log_list(name, numbers)``: a point per element; ``run.log_row(name, c=v, ...)``:
      a point of ``name/c`` per column (step: the row's number); ``run.log_table(name,
      {c: [v, ...]})``: the points of ``name/c`` per column. Values that are not numbers are
      skipped (one note per name); numpy's printed forms (``[1. 2. nan]``, ``array([...])``,
      ``np.float64(0.5)``) are read, a summarised array (``...``) is not.
    - ``run.tag``, ``run.set_tags``, ``run.add_properties``: tags.
    - ``run.upload_file``/``upload_files``/``upload_folder``: the files, relative to the run's
      working directory ``cwd``, are copied into ``outputs`` under the name given (a leading
      ``outputs/`` is Azure ML's own outputs folder, so it is dropped), when the line appears.
      Only regular files inside ``cwd`` (symlinks resolved, and refused when they lead out);
      a name must stay inside ``outputs``. What cannot be copied is one note.
    - image, residuals, predictions, accuracy table, confusion matrix: not captured (a note).

    Values are parsed with :func:`ast.literal_eval` only, within the limits above."""

    def __init__(
        self, stream: Stream, cwd: Path, outputs: Path, version: str, note: Callable[[str], None]
    ) -> None:
        self.stream = stream
        self.cwd = cwd
        self.outputs = outputs
        self.version = version
        self.note = note
        self.lines = Lines(MAX_VALUE_TEXT)
        self.counts: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.noted: set[str] = set()
        # A "log" line was seen: (type, name) and the lines of its value so far.
        self.expect: tuple[str, str] | None = None
        self.value: list[str] = []
        self.depth = _Depth()

    def feed(self, data: bytes) -> None:
        for line in self.lines.feed(data):
            self._line(line)
        self.stream.flush()

    def finish(self) -> None:
        for line in self.lines.rest():
            self._line(line)
        if self.expect is not None:
            self._value_done()
        self.stream.flush()

    # -- lines

    def _line(self, line: str) -> None:
        if self.expect is not None:
            if not line.startswith(_ATTEMPT):
                self._value_line(line)
                return
            self._value_done()  # a value cut short by the next call's line
        if not line.startswith(_ATTEMPT):
            return
        found = _LOG.fullmatch(line)
        if found:
            self.expect = (found.group(1), found.group(2))
            self.value, self.depth = [], _Depth()
            return
        try:
            self._other(line)
        except OSError as exc:
            self._once(f"os:{line}", f"Azure ML capture: {_clip(line)}: {exc}")

    def _value_line(self, line: str) -> None:
        self.value.append(line)
        self.depth.scan(line)
        if len(self.value) > MAX_VALUE_LINES or self.depth.seen > MAX_VALUE_TEXT:
            assert self.expect is not None
            kind, name = self.expect
            self.expect = None
            self._once(
                f"long:{name}",
                f"Azure ML {kind} {_clip(name)}: the value is longer than {MAX_VALUE_LINES} "
                f"lines or {MAX_VALUE_TEXT >> 20} MiB; not captured",
            )
        elif self.depth.closed():
            self._value_done()

    def _value_done(self) -> None:
        assert self.expect is not None
        (kind, name), text = self.expect, "\n".join(self.value)
        self.expect, self.value = None, []
        if kind in NOT_CAPTURED:
            self._once(
                f"kind:{kind}", f"Azure ML {NOT_CAPTURED[kind]} ({_clip(name)}) is not captured"
            )
            return
        if kind == "scalar":
            number = _number(_parse(text))
            if number is None:
                self._skipped(name, "is not a number")
            else:
                self._point(name, number)
            return
        value = _parse(text)
        if kind == "list" and isinstance(value, (list, tuple)):
            self._points(name, value)
        elif kind == "row" and isinstance(value, dict):
            step = self.rows.get(name, 0)
            self.rows[name] = step + 1
            for column, cell in list(value.items())[:MAX_POINTS]:
                number = _number(cell)
                if number is None:
                    self._skipped(f"{name}/{column}", "is not a number")
                else:
                    self.stream.metric(f"{name}/{column}", number, step, time.time(), "azureml")
        elif kind == "table" and isinstance(value, dict):
            for column, cells in list(value.items())[:MAX_POINTS]:
                if isinstance(cells, (list, tuple)):
                    self._points(f"{name}/{column}", cells)
                else:
                    self._skipped(f"{name}/{column}", "is not a list")
        elif kind in ("list", "row", "table"):
            self._skipped(name, f"could not be read as a {kind}")
        else:
            self._once(f"kind:{kind}", f"Azure ML {kind} metrics are not captured")

    def _point(self, name: str, value: float) -> None:
        step = self.counts.get(name, 0)
        self.counts[name] = step + 1
        self.stream.metric(name, value, step, time.time(), "azureml")

    def _points(self, name: str, values: list[Any] | tuple[Any, ...]) -> None:
        if len(values) > MAX_POINTS:
            self._once(
                f"points:{name}",
                f"Azure ML {_clip(name)}: {len(values)} values in one call; the first "
                f"{MAX_POINTS} are kept",
            )
        skipped = 0
        for item in values[:MAX_POINTS]:
            number = _number(item)
            if number is None:
                skipped += 1
            else:
                self._point(name, number)
        if skipped:
            self._skipped(name, f"has {skipped} value(s) that are not numbers")

    def _other(self, line: str) -> None:
        found = _TAG.fullmatch(line)
        if found:
            value = found.group(2)
            # run.tag(name) without a value prints "None": Azure ML keeps an empty value.
            self.stream.tag(found.group(1), "" if value == "None" else value, "azureml")
            return
        found = _TAGS.fullmatch(line)
        if found:
            tags = _parse(found.group(2))
            if isinstance(tags, dict):
                for key, value in tags.items():
                    self.stream.tag(
                        str(key), value if isinstance(value, str) else str(value), "azureml"
                    )
            else:
                self._once(f"tags:{line}", f"Azure ML capture: could not read {_clip(line)}")
            return
        found = _FILES.fullmatch(line)
        if found:
            for names, paths in _splits(found.group(1), " at "):
                names, paths = _parse(names), _parse(paths)
                if (
                    isinstance(names, list)
                    and isinstance(paths, list)
                    and len(names) == len(paths)
                    and all(isinstance(x, str) for x in names + paths)
                ):
                    for name, path in zip(names, paths):
                        self._upload(name, path)
                    return
            self._once(f"files:{line}", f"Azure ML capture: could not read {_clip(line)}")
            return
        found = _FILE.fullmatch(line)
        if found:
            self._upload_one(found.group(1), os.path.isfile, self._upload)
            return
        found = _FOLDER.fullmatch(line)
        if found:
            self._upload_one(found.group(1), os.path.isdir, self._upload_folder)

    def _upload_one(
        self, text: str, exists: Callable[[str], bool], upload: Callable[[str, str], None]
    ) -> None:
        """``NAME at PATH``, where either may hold " at ": the first split whose path
        exists, else the last one (which then fails with a note)."""
        splits = list(_splits(text, " at "))
        if not splits:
            return
        for name, path in splits:
            if exists(str(self.cwd / path)):
                upload(name, path)
                return
        upload(*splits[-1])

    # -- files

    def _existing(
        self, name: str, path: str, is_kind: Callable[[str], bool], kind: str
    ) -> str | None:
        """The source of upload ``name`` (:meth:`_source`) if it is ``kind``; else None,
        with one note."""
        source = self._source(path, name)
        if source is not None and not is_kind(source):
            self._once(
                f"file:{name}", f"Azure ML upload {_clip(name)}: {_clip(path)} is not {kind}"
            )
            return None
        return source

    def _upload(self, name: str, path: str) -> None:
        source = self._existing(name, path, os.path.isfile, "a file")
        if source is None:
            return
        target = self._target(name)
        if target is not None:
            self._copy(source, target, name)

    def _upload_folder(self, name: str, path: str) -> None:
        source = self._existing(name, path, os.path.isdir, "a folder")
        if source is None:
            return
        copied = 0
        for folder, dirs, files in os.walk(source):  # never follows links to folders
            dirs.sort()
            for file in sorted(files):
                if copied >= MAX_FOLDER_FILES:
                    self._once(
                        f"folder:{name}",
                        f"Azure ML upload {_clip(name)}: more than {MAX_FOLDER_FILES} files; "
                        "the rest are not copied",
                    )
                    return
                relative = os.path.relpath(os.path.join(folder, file), source)
                self._upload(f"{name.rstrip('/')}/{relative}", os.path.join(folder, file))
                copied += 1

    def _source(self, path: str, name: str) -> str | None:
        """``path`` (relative to the working directory) with its links resolved, or None
        (and a note) when it leads out of the working directory."""
        root = os.path.realpath(self.cwd)
        source = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([root, source]) != root:
            self._once(
                f"out:{name}",
                f"Azure ML upload {_clip(name)}: {_clip(path)} is outside the run's folder; "
                "not copied",
            )
            return None
        return source

    def _target(self, name: str) -> Path | None:
        """Where artifact ``name`` goes in the outputs folder (its folders made, none of them
        a link), or None (and a note) for a name that would leave it."""
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if parts[:1] == ["outputs"]:
            parts = parts[1:]  # Azure ML's outputs folder is the run's outputs folder
        bad = (
            not parts
            or name.startswith(("/", "\\"))
            or ".." in parts
            or any("\x00" in p for p in parts)
            or re.match(r"[A-Za-z]:", name)
        )
        if bad:
            self._once(
                f"name:{name}",
                f"Azure ML upload: the name {_clip(name)!r} is not a relative path inside the "
                "outputs; not copied",
            )
            return None
        root = os.path.realpath(self.cwd)
        if os.path.realpath(self.outputs) != os.path.join(
            root, os.path.relpath(self.outputs, self.cwd)
        ):
            self._once("outputs", "Azure ML upload: the outputs folder is a link; nothing copied")
            return None
        self.outputs.mkdir(exist_ok=True)  # the script may have removed it
        folder = self.outputs
        for part in parts[:-1]:
            folder = folder / part
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                self._once(
                    f"name:{name}",
                    f"Azure ML upload {_clip(name)}: {part} in the outputs is not a folder; "
                    "not copied",
                )
                return None
            folder.mkdir(exist_ok=True)
        target = folder / parts[-1]
        if target.is_symlink() or target.is_dir():
            self._once(
                f"name:{name}",
                f"Azure ML upload {_clip(name)}: the outputs hold a link or folder of that "
                "name; not copied",
            )
            return None
        return target

    def _copy(self, source: str, target: Path, name: str) -> None:
        try:
            if target.exists() and os.path.samefile(source, target):
                return  # uploaded from the outputs folder itself: already there
            shutil.copyfile(source, target)
        except OSError as exc:
            self._once(f"copy:{name}", f"Azure ML upload {_clip(name)}: not copied: {exc}")

    # -- notes

    def _skipped(self, name: str, why: str) -> None:
        self._once(f"skip:{name}", f"Azure ML metric {_clip(name)} {why}: not captured")

    def _once(self, key: str, message: str) -> None:
        if key in self.noted or len(self.noted) > MAX_NOTES:
            return
        self.noted.add(key)
        if len(self.noted) > MAX_NOTES:
            message = f"Azure ML capture: more than {MAX_NOTES} notes; the rest are not shown"
        self.note(message)


class _Depth:
    """How deep in brackets a printed value is, read a line at a time (quotes respected), so
    a value numpy wrapped over several lines is read whole."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote = ""
        self.seen = 0

    def scan(self, line: str) -> None:
        self.seen += len(line) + 1
        if "'" not in line and '"' not in line:  # the common case, without a loop in Python
            self.depth += sum(line.count(c) for c in "([{") - sum(line.count(c) for c in ")]}")
            return
        escaped = False
        for char in line:
            if self.quote:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == self.quote:
                    self.quote = ""
            elif char in "'\"":
                self.quote = char
            elif char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth -= 1
        self.quote = ""  # a repr never breaks a line inside a quote

    def closed(self) -> bool:
        return self.depth <= 0


def _splits(text: str, separator: str) -> Iterator[tuple[str, str]]:
    """Each way of cutting ``text`` in two at ``separator``, leftmost first."""
    start = text.find(separator)
    while start >= 0:
        yield text[:start], text[start + len(separator) :]
        start = text.find(separator, start + 1)


# numpy 2's scalar reprs (np.float64(0.5)), torch's tensor(0.5), numpy's array([...], dtype=...)
_WRAPPED = re.compile(r"\b(?:(?:np|numpy)\.[A-Za-z_]\w*|tensor)\(([^()]*)\)")
_DTYPE = re.compile(r",\s*dtype=[\w.]+\)")
_ARRAY = re.compile(r"\barray\(")
_NUMPY_ROW = re.compile(r"\[([^\[\]]*)\]")


def _parse(text: str) -> Any:
    """A printed value as Python data (``ast.literal_eval`` only), or None when it cannot be
    read: numbers, strings, lists, tuples, dicts; nan and inf as printed bare; numpy's forms
    of arrays and scalars."""
    text = text.strip()
    if not text or len(text) > MAX_VALUE_TEXT:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    text = _ARRAY.sub("(", _DTYPE.sub(")", _WRAPPED.sub(r"\1", text)))
    text = " ".join(text.split("\n"))
    row = _NUMPY_ROW.fullmatch(text)
    if row and "," not in row.group(1) and "..." not in row.group(1):
        # numpy prints a 1-D array as [1.  2.5 nan]
        try:
            return [float(item) for item in row.group(1).split()]
        except ValueError:
            pass
    try:
        return _restore(ast.literal_eval(_bare_names(text)))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, tokenize.TokenError):
        return None


def _bare_names(text: str) -> str:
    """``text`` with the names nan and inf, as Python and numpy print them, made literals."""
    if "nan" not in text and "inf" not in text:
        return text
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        kind, value = token[0], token[1]
        if kind == tokenize.NAME and value in ("nan", "inf"):
            kind, value = (
                (tokenize.NUMBER, "1e999") if value == "inf" else (tokenize.STRING, repr(_NAN))
            )
        tokens.append((kind, value))
    return tokenize.untokenize(tokens)


def _restore(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str) and value == _NAN:
        return float("nan")
    if depth > 3:
        return value
    if isinstance(value, (list, tuple)):
        return [_restore(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _restore(v, depth + 1) for k, v in value.items()}
    return value


def _number(value: Any) -> float | None:
    """A parsed value as a metric value; None for anything but a number (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond a float: as big as it gets
        return float("inf") if value > 0 else float("-inf")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"
