"""Built-in functions callable from configuration expressions.

Names and behaviour follow Terraform's functions of the same names, so that what users know
carries over. Terraform's type system is mapped onto plain Python values (see types.py): a list
is a tuple and a dict an object, and a function whose Terraform result is a list, set or map
returns a :class:`TfList`, ``TfSet`` or :class:`TfMap` (so ``type()`` and the console show
what Terraform's do; tests/unit/test_function_types.py holds them to it). As in Terraform, a
number or bool is accepted where a string is expected (and a numeric string where a number
is), being converted on the way.

Every function is registered with :func:`_fn`, which checks the argument count against the
Python signature and turns any failure into a one-line :class:`FunctionError` prefixed with the
function's name; implementations therefore raise short messages without repeating their name.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
import math
import os
import posixpath
import re
import stat
from collections.abc import Callable, Hashable, Iterable
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

from trainform.config.schema import type_of
from trainform.config.types import DYNAMIC, convert, element_type_of, infer, typed, unify
from trainform.config.values import (
    MAX_COLLECTION_SIZE,
    MAX_STRING_LENGTH,
    FunctionContext,
    FunctionError,
    LimitError,
    TfList,
    TfMap,
    TfSet,
    measure,
)

if TYPE_CHECKING:
    import yaml  # imported where used: it costs ~10 ms of every command's start

__all__ = ["FUNCTIONS", "FUNCTION_DOCS", "function_names"]

_Number: TypeAlias = int | float

FUNCTIONS: dict[str, Callable[..., Any]] = {}
"""Function name -> callable taking ``(ctx, *args)``."""

FUNCTION_DOCS: dict[str, str] = {}
"""Function name -> one-line signature and description, for the README reference."""

# Stands for "argument not given" where null is itself a meaningful argument (lookup's default).
_MISSING: Any = object()

# Terraform caps range() so that a typo in a bound cannot exhaust memory.
_RANGE_LIMIT = 1024


def function_names() -> list[str]:
    """All function names, sorted."""
    return sorted(FUNCTIONS)


# --- registration -----------------------------------------------------------------------------


def _arity(impl: Callable[..., Any]) -> tuple[int, int | None]:
    """(minimum, maximum or None if unbounded) argument count, not counting the context."""
    params = list(inspect.signature(impl).parameters.values())[1:]
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    low = sum(1 for p in positional if p.default is p.empty)
    unbounded = any(p.kind is p.VAR_POSITIONAL for p in params)
    return low, None if unbounded else len(positional)


def _expected(low: int, high: int | None) -> str:
    def count(n: int) -> str:
        return f"{n} argument" if n == 1 else f"{n} arguments"

    if high is None:
        return f"expected at least {count(low)}"
    if low == high:
        return f"expected {count(low)}"
    return f"expected {low} to {high} arguments"


def _fn(name: str, doc: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated ``impl(ctx, *args)`` as built-in ``name`` documented by ``doc``."""

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        low, high = _arity(impl)

        @functools.wraps(impl)
        def call(ctx: FunctionContext, *args: Any) -> Any:
            if len(args) < low or (high is not None and len(args) > high):
                raise FunctionError(f"{name}: {_expected(low, high)}, got {len(args)}")
            try:
                return impl(ctx, *args)
            except FunctionError as exc:
                raise FunctionError(f"{name}: {exc}") from exc
            # An input no check foresaw must still reach the user as an error in their
            # configuration naming the function, not as a traceback.
            except (ArithmeticError, LookupError, ValueError, TypeError, RecursionError) as exc:
                raise FunctionError(f"{name}: {exc}") from exc

        FUNCTIONS[name] = call
        FUNCTION_DOCS[name] = doc
        return impl

    return register


# --- argument checks and conversions ----------------------------------------------------------


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _show(value: Any) -> str:
    """A short one-line rendering of any value, for messages."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    # bool is a subclass of int in Python, but HCL keeps bools and numbers apart.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_text(number: _Number) -> str:
    """Terraform's canonical spelling of a number: 1 -> "1", 1.0 -> "1", 1e-7 -> "0.0000001"."""
    if isinstance(number, int):
        return str(number)
    if not math.isfinite(number):
        raise FunctionError(f"{number} cannot be written as a number")
    if number == 0:
        return "0"
    # repr gives the shortest digits that round-trip; Decimal's "f" spells out the exponent.
    text = format(Decimal(repr(number)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


_INTEGER_RE = re.compile(r"[+-]?\d+", re.ASCII)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _parse_number(text: str) -> _Number | None:
    """The number text spells, or None; stricter than int()/float(), which accept "1_0" and
    " inf "."""
    if _INTEGER_RE.fullmatch(text):
        return int(text)
    if _NUMBER_RE.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else None
    return None


def _num_result(value: _Number, inputs: Iterable[_Number]) -> _Number:
    """value as an int if every input was an int and value is whole, else as a float."""
    if all(isinstance(x, int) for x in inputs):
        if isinstance(value, int):
            return value
        if value.is_integer():
            return int(value)
    return float(value)


def _too_long(length: int) -> None:
    """Raises LimitError if a result of ``length`` characters would pass the string length
    limit (checked before the result is built)."""
    if length > MAX_STRING_LENGTH:
        raise LimitError(
            f"the result would be longer than {MAX_STRING_LENGTH} characters "
            "(the string length limit)"
        )


def _want_str(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return _number_text(value)
    raise FunctionError(f"{what} must be a string, got {type_of(value)}")


def _want_num(value: Any, what: str) -> _Number:
    if _is_number(value):
        return value
    if isinstance(value, str):
        number = _parse_number(value)
        if number is None:
            raise FunctionError(f"{what} must be a number, got string {_quote(value)}")
        return number
    raise FunctionError(f"{what} must be a number, got {type_of(value)}")


def _want_int(value: Any, what: str) -> int:
    number = _want_num(value, what)
    if isinstance(number, int):
        return number
    if not number.is_integer():
        raise FunctionError(f"{what} must be a whole number, got {_show(number)}")
    return int(number)


def _want_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false") and isinstance(value, str):
        return value == "true"
    raise FunctionError(f"{what} must be a bool, got {type_of(value)}")


def _want_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, list):
        return value
    raise FunctionError(f"{what} must be a list, got {type_of(value)}")


def _want_map(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise FunctionError(f"{what} must be a map, got {type_of(value)}")


def _want_sequence(value: Any, what: str) -> list[Any]:
    """A list or tuple argument: as in Terraform, a set's elements have no positions."""
    if isinstance(value, TfSet):
        raise FunctionError(f"{what} must be a list or tuple, got a set")
    return _want_list(value, what)


def _as_list(value: Any, what: str) -> tuple[list[Any], Any]:
    """A list, set or tuple argument as Terraform passes it to a parameter of type
    ``list(any)``: its elements converted to the one type they share, and that type."""
    elements = _want_list(value, what)
    element = element_type_of(value)
    return [convert(e, element) for e in elements], element


def _same_kind(items: list[Any], result: list[Any]) -> list[Any]:
    """result as a list if items (a list or a set) is one, as a tuple if items is a tuple:
    Terraform's functions that only reorder or select (``reverse``, ``slice``) keep a tuple
    a tuple."""
    if isinstance(items, (TfList, TfSet)):
        return typed(TfList(result), element_type_of(items))
    return result


def _json_ready(value: Any) -> Any:
    """value with whole floats made ints: HCL has one number type, so 1.0 is 1 and encodes so.

    Only floats below 2**53 are converted; larger ones are not exact integers to begin with.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def _to_json(value: Any) -> str:
    try:
        text = json.dumps(
            _json_ready(value),
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
            ensure_ascii=False,
        )
    except ValueError:
        raise FunctionError("infinity and NaN cannot be encoded as JSON") from None
    # Go's encoder (Terraform's) escapes what HTML and JavaScript would misread.
    return text.translate(_JSON_HTML_ESCAPES)


_JSON_HTML_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def _identity(value: Any) -> str:
    """A key equal for exactly the values HCL considers equal (1 and 1.0, but not 1 and true),
    so that distinct/contains/index compare the way the language does, and in linear time."""
    return json.dumps(_json_ready(value), sort_keys=True)


def _distinct(items: Iterable[Any]) -> list[Any]:
    seen: set[str] = set()
    out: list[Any] = []
    for item in items:
        key = _identity(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def grapheme_count(text: str) -> int:
    """Characters as a reader counts them (Unicode extended grapheme clusters), as Terraform's
    length() does: "👨‍👩‍👧" is one, though seven code points."""
    if text.isascii():
        return len(text) - text.count("\r\n")
    import regex  # python-hcl2 depends on it already; imported where used

    return len(regex.findall(r"\X", text))


def _expand_home(path: str) -> str:
    # Like Terraform (and unlike os.path.expanduser) only a leading "~" segment is expanded.
    if path == "~" or path.startswith("~/"):
        return os.path.expanduser("~") + path[1:]
    return path


# --- files ------------------------------------------------------------------------------------


@_fn("file", "file(path): Contents of the file (relative to the configuration) as UTF-8 text.")
def _file(ctx: FunctionContext, path: Any) -> str:
    name = _expand_home(_want_str(path, "path"))
    try:
        return ctx.read_file(name).decode("utf-8")
    except UnicodeDecodeError:
        raise FunctionError(f"{_quote(name)} is not valid UTF-8 text") from None


@_fn("filesha256", "filesha256(path): Hex SHA-256 digest of the file's bytes.")
def _filesha256(ctx: FunctionContext, path: Any) -> str:
    name = _expand_home(_want_str(path, "path"))
    return hashlib.sha256(ctx.read_file(name)).hexdigest()


@_fn("fileexists", "fileexists(path): Whether a regular file exists at path (not recorded).")
def _fileexists(ctx: FunctionContext, path: Any) -> bool:
    name = _expand_home(_want_str(path, "path"))
    try:
        mode = (ctx.base_dir / name).stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise FunctionError(f"cannot check {_quote(name)}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise FunctionError(f"{_quote(name)} exists but is not a regular file")
    return True


# --- paths ------------------------------------------------------------------------------------


def _clean(path: str) -> str:
    """Go's filepath.Clean, which Terraform's path functions use."""
    cleaned = posixpath.normpath(path) if path else "."
    # POSIX lets normpath keep a leading "//"; Go's Clean reduces it to "/".
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@_fn("abspath", "abspath(path): Absolute path, relative paths taken from the configuration dir.")
def _abspath(ctx: FunctionContext, path: Any) -> str:
    return os.path.abspath(os.path.join(ctx.base_dir, _want_str(path, "path")))


@_fn("basename", "basename(path): Last element of path, ignoring trailing slashes.")
def _basename(ctx: FunctionContext, path: Any) -> str:
    text = _want_str(path, "path")
    if not text:
        return "."
    stripped = text.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else "/"


@_fn("dirname", "dirname(path): All but the last element of path.")
def _dirname(ctx: FunctionContext, path: Any) -> str:
    text = _want_str(path, "path")
    return _clean(text[: text.rfind("/") + 1])


@_fn("pathexpand", "pathexpand(path): path with a leading ~ replaced by the home directory.")
def _pathexpand(ctx: FunctionContext, path: Any) -> str:
    return _expand_home(_want_str(path, "path"))


# --- strings ----------------------------------------------------------------------------------

_VERB_RE = re.compile(
    r"%(?P<flags>[-+ #0]*)(?:\[(?P<index>\d+)\])?(?P<width>\d+)?(?:\.(?P<prec>\d*))?(?P<verb>.?)",
    re.DOTALL,
)


def _pad(text: str, flags: str, width: int) -> str:
    if "-" in flags:
        return text.ljust(width)
    return text.rjust(width, "0" if "0" in flags else " ")


def _number_spec(flags: str, width: int, prec: int | None, kind: str) -> str:
    """A Python format spec equivalent to Go's flags, width and precision."""
    align = "<" if "-" in flags else ""
    sign = "+" if "+" in flags else " " if " " in flags else ""
    alt = "#" if "#" in flags else ""
    zero = "0" if "0" in flags and "-" not in flags else ""
    precision = "" if prec is None else f".{prec}"
    return f"{align}{sign}{alt}{zero}{width or ''}{precision}{kind}"


def _format_value(
    verb: str, flags: str, width: int, prec: int | None, value: Any, what: str
) -> str:
    if value is None and verb != "v":
        raise FunctionError(f"{what} is null")
    if verb in "sv":
        if verb == "v" and ("#" in flags or isinstance(value, (list, dict))):
            text = _to_json(value)
        else:
            text = "null" if value is None else _want_str(value, what)
        return _pad(text if prec is None else text[:prec], flags, width)
    if verb == "q":
        return _pad(_quote(_want_str(value, what)), flags, width)
    if verb == "t":
        return _pad("true" if _want_bool(value, what) else "false", flags, width)
    if verb in "dxXob":
        if prec is not None:
            raise FunctionError(f"{what}: precision is not supported with %{verb}")
        return format(_want_int(value, what), _number_spec(flags, width, None, verb))
    if verb in "feE":
        return format(_want_num(value, what), _number_spec(flags, width, prec, verb))
    raise FunctionError(f"unsupported verb {_quote('%' + verb)}")


@_fn(
    "format",
    "format(spec, values...): Printf-style formatting with Terraform's verbs "
    "(%s %d %f %.2f %q %v %#v %t %x %o %b %e %%, flags, width, %[n]).",
)
def _format(ctx: FunctionContext, spec: Any, *args: Any) -> str:
    template = _want_str(spec, "format string")
    out: list[str] = []
    length = 0
    used: set[int] = set()
    pos = 0
    start = 0
    while (percent := template.find("%", start)) >= 0:
        out.append(template[start:percent])
        match = _VERB_RE.match(template, percent)
        assert match is not None  # the pattern matches any text starting with "%"
        start = match.end()
        verb = match["verb"]
        if verb == "%":
            out.append("%")
            continue
        if not verb:
            raise FunctionError("format string ends with an incomplete verb")
        if match["index"] is not None:
            pos = int(match["index"]) - 1
            if pos < 0:
                raise FunctionError(f"argument index in {_quote(match[0])} must be at least 1")
        if pos >= len(args):
            raise FunctionError(
                f"not enough arguments for {_quote(match[0])}: it needs value {pos + 1} "
                f"but {len(args)} given"
            )
        prec = None if match["prec"] is None else _format_size(match["prec"] or "0", match[0])
        what = f"value {pos + 1} for {_quote(match[0])}"
        width = _format_size(match["width"] or "0", match[0])
        out.append(_format_value(verb, match["flags"], width, prec, args[pos], what))
        length += len(out[-2]) + len(out[-1])
        _too_long(length)
        used.add(pos)
        pos += 1
    out.append(template[start:])
    if len(used) < len(args):
        raise FunctionError(
            f"too many arguments: {len(args)} given but the format string uses {len(used)}"
        )
    return "".join(out)


# Go's fmt refuses widths and precisions above a million (%!(BADWIDTH)); so does format().
_FORMAT_SIZE_LIMIT = 1_000_000


def _format_size(digits: str, verb: str) -> int:
    if len(digits) > 7 or int(digits) > _FORMAT_SIZE_LIMIT:
        raise FunctionError(
            f"width or precision in {_quote(verb[:20])} is larger than {_FORMAT_SIZE_LIMIT}"
        )
    return int(digits)


@_fn("join", "join(separator, lists...): Elements of the lists joined with separator.")
def _join(ctx: FunctionContext, sep: Any, first: Any, *rest: Any) -> str:
    separator = _want_str(sep, "separator")
    parts: list[str] = []
    for number, items in enumerate((first, *rest), start=1):
        for index, item in enumerate(_want_list(items, f"list {number}")):
            parts.append(_want_str(item, f"element {index} of list {number}"))
    _too_long(sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0))
    return separator.join(parts)


@_fn("split", "split(separator, string): string split at each separator into a list.")
def _split(ctx: FunctionContext, sep: Any, text: Any) -> list[str]:
    separator = _want_str(sep, "separator")
    string = _want_str(text, "string")
    # Go (and so Terraform) splits into single characters on an empty separator.
    return typed(TfList(list(string) if not separator else string.split(separator)), "string")


@_fn("lower", "lower(string): string in lower case.")
def _lower(ctx: FunctionContext, text: Any) -> str:
    return _want_str(text, "argument").lower()


@_fn("upper", "upper(string): string in upper case.")
def _upper(ctx: FunctionContext, text: Any) -> str:
    return _want_str(text, "argument").upper()


@_fn("title", "title(string): First letter of each word upper-cased, the rest left as is.")
def _title(ctx: FunctionContext, text: Any) -> str:
    # Unlike str.title, Go's strings.Title (Terraform's) leaves the rest of each word alone.
    out: list[str] = []
    after_separator = True
    for char in _want_str(text, "argument"):
        out.append(char.upper() if after_separator else char)
        after_separator = char.isspace() or (char.isascii() and not (char.isalnum() or char == "_"))
    return "".join(out)


@_fn("trimspace", "trimspace(string): string without leading and trailing whitespace.")
def _trimspace(ctx: FunctionContext, text: Any) -> str:
    return _want_str(text, "argument").strip()


_GROUP_REF_RE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _expand_template(template: str, match: Any) -> str:
    """Go's Regexp.Expand, so replacements are written as in Terraform: $1, ${1}, ${name}, $$.
    Past the string length limit, LimitError: "$0" repeated would multiply the text."""

    def reference(ref: re.Match[str]) -> str:
        if ref[0] == "$$":
            return "$"
        name = ref[1] or ref[2]
        try:
            group = match.group(int(name) if name.isdigit() else name)
        except IndexError:  # Go expands a reference to a group that does not exist to ""
            return ""
        return group or ""

    out: list[str] = []
    length = last = 0
    for ref in _GROUP_REF_RE.finditer(template):
        out.append(template[last : ref.start()])
        out.append(reference(ref))
        length += len(out[-2]) + len(out[-1])
        _too_long(length)
        last = ref.end()
    out.append(template[last:])
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, shown: str) -> Any:
    """``pattern`` compiled by RE2, the engine of Go's regexp and so of Terraform's regex
    functions: the same syntax (no backreferences or lookaround), and matching in time
    linear in the text, so no pattern can backtrack catastrophically."""
    import re2  # google-re2; imported where used, as it is needed only here

    options = re2.Options()
    options.log_errors = False  # RE2 would log every invalid pattern to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args else "invalid"
        reason = reason if isinstance(reason, str) else str(reason)
        raise FunctionError(f"invalid regular expression {shown}: {reason}") from None


def _shown(pattern: str) -> str:
    return _quote(pattern if len(pattern) <= 60 else pattern[:57] + "...")


def _regex(pattern: Any) -> Any:
    """The compiled pattern of regex() and regexall(), whose results take one shape: a
    pattern mixing named and unnamed groups has none."""
    text = _want_str(pattern, "pattern")
    compiled = _compiled(text, _shown(text))
    if compiled.groupindex and len(compiled.groupindex) != compiled.groups:
        raise FunctionError(
            f"the pattern {_shown(text)} mixes named and unnamed capture groups; use one kind"
        )
    return compiled


def _all_matches(pattern: Any, string: str) -> Iterable[Any]:
    """Every match, as Go's "All" functions find them: an empty match right where the
    previous match ended is skipped (Python's re keeps it)."""
    previous_end = -1
    found = 0
    for match in pattern.finditer(string):
        start, end = match.span()
        if not (start == end == previous_end):
            found += 1
            if found > MAX_COLLECTION_SIZE:  # each match costs microseconds: bound the time
                raise LimitError(
                    f"more than {MAX_COLLECTION_SIZE} matches (the collection size limit)"
                )
            yield match
        previous_end = end


@_fn(
    "replace",
    "replace(string, substring, replacement): Every substring replaced; "
    'a substring written "/re/" is a regular expression (RE2 syntax, $1 or ${name} in the '
    "replacement).",
)
def _replace(ctx: FunctionContext, text: Any, substr: Any, replacement: Any) -> str:
    string = _want_str(text, "string")
    search = _want_str(substr, "substring")
    repl = _want_str(replacement, "replacement")
    if len(search) > 1 and search.startswith("/") and search.endswith("/"):
        pattern = _compiled(search[1:-1], _shown(search))
        out: list[str] = []
        length = last = 0
        for match in _all_matches(pattern, string):
            out.append(string[last : match.start()])
            out.append(_expand_template(repl, match))
            length += len(out[-2]) + len(out[-1])
            _too_long(length)
            last = match.end()
        out.append(string[last:])
        return "".join(out)
    if search:
        _too_long(len(string) + string.count(search) * (len(repl) - len(search)))
    else:  # Go, like Python, inserts the replacement around every character
        _too_long(len(string) + (len(string) + 1) * len(repl))
    return string.replace(search, repl)


def _match_value(pattern: Any, match: Any) -> Any:
    """What regex() returns for one match, as Terraform: the matched text if the pattern
    has no capture groups, a map of named groups, or a list of unnamed ones (null for a
    group that took no part in the match)."""
    if not pattern.groups:
        return match.group(0)
    if pattern.groupindex:
        return {name: match.group(index) for name, index in pattern.groupindex.items()}
    return list(match.groups())


def _match_type(pattern: Any) -> Any:
    """The type of what :func:`_match_value` returns for pattern."""
    if not pattern.groups:
        return "string"
    if pattern.groupindex:
        return ("object", tuple((name, "string") for name in sorted(pattern.groupindex)))
    return ("tuple", ("string",) * pattern.groups)


@_fn(
    "regex",
    "regex(pattern, string): The first match of the RE2 pattern: the matched text, a list of "
    "its capture groups, or a map of its named ones. Error if nothing matches.",
)
def _regex_fn(ctx: FunctionContext, pattern: Any, text: Any) -> Any:
    compiled = _regex(pattern)
    string = _want_str(text, "string")
    match = compiled.search(string)
    if match is None:
        raise FunctionError("the pattern did not match any part of the string")
    return _match_value(compiled, match)


@_fn(
    "regexall",
    "regexall(pattern, string): Every match of the RE2 pattern, each as regex() returns it; "
    "an empty list if nothing matches.",
)
def _regexall(ctx: FunctionContext, pattern: Any, text: Any) -> list[Any]:
    compiled = _regex(pattern)
    string = _want_str(text, "string")
    found = [_match_value(compiled, match) for match in _all_matches(compiled, string)]
    return typed(TfList(found), _match_type(compiled))


@_fn(
    "substr",
    "substr(string, offset, length): length characters from offset "
    "(negative offset counts from the end; length -1 means to the end).",
)
def _substr(ctx: FunctionContext, text: Any, offset: Any, length: Any) -> str:
    string = _want_str(text, "string")
    first = _want_int(offset, "offset")
    count = _want_int(length, "length")
    if first < 0:
        first = max(len(string) + first, 0)
    return string[first:] if count < 0 else string[first : first + count]


@_fn("startswith", "startswith(string, prefix): Whether string begins with prefix.")
def _startswith(ctx: FunctionContext, text: Any, prefix: Any) -> bool:
    return _want_str(text, "string").startswith(_want_str(prefix, "prefix"))


@_fn("endswith", "endswith(string, suffix): Whether string ends with suffix.")
def _endswith(ctx: FunctionContext, text: Any, suffix: Any) -> bool:
    return _want_str(text, "string").endswith(_want_str(suffix, "suffix"))


@_fn("strrev", "strrev(string): string with its characters in reverse order.")
def _strrev(ctx: FunctionContext, text: Any) -> str:
    return _want_str(text, "argument")[::-1]


# --- collections ------------------------------------------------------------------------------


@_fn("concat", "concat(lists...): One list of the elements of all lists, in order.")
def _concat(ctx: FunctionContext, first: Any, *rest: Any) -> list[Any]:
    lists = [_want_sequence(v, f"argument {i}") for i, v in enumerate((first, *rest), start=1)]
    out = [e for items in lists for e in items]
    if not all(isinstance(items, TfList) for items in lists):
        return out  # a tuple among them: a tuple, as in Terraform
    element: Any = DYNAMIC
    for items in lists:
        element = unify(element, element_type_of(items))
        if element is None:
            raise FunctionError("all arguments must be lists of the same type")
    return typed(TfList(convert(e, element) for e in out), element)


@_fn("merge", "merge(maps...): One map of all keys; later maps win. Null arguments are skipped.")
def _merge(ctx: FunctionContext, *maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, mapping in enumerate(maps, start=1):
        if mapping is not None:
            out.update(_want_map(mapping, f"argument {number}"))
    # Maps of one element type merge into a map of it; anything else (an object, a null,
    # maps of different element types) into an object, as in Terraform.
    if maps and all(isinstance(m, TfMap) for m in maps):
        elements = {infer(m)[1] for m in maps}
        if len(elements) == 1:
            return typed(TfMap(out), elements.pop())
    return out


@_fn(
    "length",
    "length(value): Number of elements of a list or map, or of characters (grapheme "
    "clusters, as a reader counts them) of a string.",
)
def _length(ctx: FunctionContext, value: Any) -> int:
    if isinstance(value, str):
        return grapheme_count(value)
    if isinstance(value, (list, dict)):
        return len(value)
    raise FunctionError(f"argument must be a string, list or map, got {type_of(value)}")


@_fn("lookup", "lookup(map, key, default?): map[key], or default if absent (error if none).")
def _lookup(ctx: FunctionContext, mapping: Any, key: Any, default: Any = _MISSING) -> Any:
    table = _want_map(mapping, "map")
    name = _want_str(key, "key")
    if name not in table and default is _MISSING:
        raise FunctionError(f"key {_quote(name)} not found and no default given")
    found = table.get(name, default)
    if isinstance(table, TfMap) and default is not _MISSING:
        # A map's element type and the default's unify into the result's type, as in
        # Terraform: lookup(tomap({a = "x"}), "b", 2) is "2".
        target = unify(element_type_of(table), infer(default))
        if target is None:
            raise FunctionError("the default must have the type of the map's elements")
        return convert(found, target)
    return found


@_fn("keys", "keys(map): The map's keys, sorted.")
def _keys(ctx: FunctionContext, mapping: Any) -> list[str]:
    names = sorted(_want_map(mapping, "argument"))
    # A map's keys are a list(string); an object's a tuple, as in Terraform.
    return typed(TfList(names), "string") if isinstance(mapping, TfMap) else names


@_fn("values", "values(map): The map's values, in the order of its sorted keys.")
def _values(ctx: FunctionContext, mapping: Any) -> list[Any]:
    table = _want_map(mapping, "argument")
    found = [table[key] for key in sorted(table)]
    return typed(TfList(found), element_type_of(table)) if isinstance(table, TfMap) else found


@_fn("contains", "contains(list, value): Whether value is an element of list.")
def _contains(ctx: FunctionContext, items: Any, value: Any) -> bool:
    wanted = _identity(value)
    return any(_identity(item) == wanted for item in _want_list(items, "list"))


@_fn(
    "element",
    "element(list, index): list[index], wrapping around past the end; -1 is the last.",
)
def _element(ctx: FunctionContext, items: Any, index: Any) -> Any:
    elements = _want_sequence(items, "list")
    position = _want_int(index, "index")
    if not elements:
        raise FunctionError("cannot take an element of an empty list")
    # Negative indices count from the end (Terraform's documented behaviour since 1.11's
    # successors; Terraform 1.11 itself panics on them).
    return elements[position % len(elements)]


@_fn("index", "index(list, value): Position of the first element equal to value.")
def _index(ctx: FunctionContext, items: Any, value: Any) -> int:
    wanted = _identity(value)
    for position, item in enumerate(_want_sequence(items, "list")):
        if _identity(item) == wanted:
            return position
    raise FunctionError(f"{_show(value)} is not in the list")


def _flat(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, list):
            out.extend(_flat(item))
        else:
            out.append(item)
    return out


@_fn("flatten", "flatten(list): Nested lists replaced by their elements, recursively.")
def _flatten(ctx: FunctionContext, items: Any) -> list[Any]:
    return _flat(_want_list(items, "argument"))


@_fn("distinct", "distinct(list): list without duplicates, first occurrences kept in order.")
def _distinct_fn(ctx: FunctionContext, items: Any) -> list[Any]:
    elements, element = _as_list(items, "argument")
    return typed(TfList(_distinct(elements)), element)


@_fn("reverse", "reverse(list): list in reverse order.")
def _reverse(ctx: FunctionContext, items: Any) -> list[Any]:
    return _same_kind(items, _want_list(items, "argument")[::-1])


@_fn("sort", "sort(list): Elements as strings, sorted lexicographically.")
def _sort(ctx: FunctionContext, items: Any) -> list[str]:
    elements = _want_list(items, "argument")
    found = sorted(_want_str(item, f"element {i}") for i, item in enumerate(elements))
    return typed(TfList(found), "string")


@_fn(
    "range",
    "range(start?, limit, step?): Numbers from start (default 0) up to but excluding limit, "
    "by step (default 1 or -1).",
)
def _range(
    ctx: FunctionContext, first: Any, second: Any = _MISSING, third: Any = _MISSING
) -> list[_Number]:
    if second is _MISSING:
        start: _Number = 0
        limit = _want_num(first, "limit")
    else:
        start, limit = _want_num(first, "start"), _want_num(second, "limit")
    step = _want_num(third, "step") if third is not _MISSING else 1 if limit >= start else -1
    if step == 0:
        raise FunctionError("step must not be zero")
    inputs = (start, limit, step)
    out: list[_Number] = []
    while True:
        # start + i*step rather than repeated addition, so float ranges do not drift.
        value = start + len(out) * step
        if (value >= limit) if step > 0 else (value <= limit):
            return typed(TfList(out), "number")
        if len(out) == _RANGE_LIMIT:
            raise FunctionError(f"more than {_RANGE_LIMIT} values would be generated")
        out.append(_num_result(value, inputs))


@_fn("slice", "slice(list, start, end): Elements from index start up to but excluding end.")
def _slice(ctx: FunctionContext, items: Any, start: Any, end: Any) -> list[Any]:
    elements = _want_sequence(items, "list")
    first = _want_int(start, "start index")
    last = _want_int(end, "end index")
    if first < 0:
        raise FunctionError(f"start index must not be negative, got {first}")
    if last > len(elements):
        raise FunctionError(
            f"end index {last} is past the end of the list (length {len(elements)})"
        )
    if first > last:
        raise FunctionError(f"start index {first} is greater than end index {last}")
    return _same_kind(items, elements[first:last])


@_fn("zipmap", "zipmap(keys, values): Map from each key to the value at the same position.")
def _zipmap(ctx: FunctionContext, keys: Any, values: Any) -> dict[str, Any]:
    names = _want_list(keys, "keys")
    items = _want_list(values, "values")
    if len(names) != len(items):
        raise FunctionError(f"{len(names)} keys but {len(items)} values")
    out = {
        _want_str(name, f"key {i}"): item
        for i, (name, item) in enumerate(zip(names, items, strict=True))
    }
    # Values in a list make a map; values in a tuple an object, as in Terraform.
    if isinstance(values, (TfList, TfSet)):
        return typed(TfMap(out), element_type_of(values))
    return out


@_fn("coalesce", "coalesce(values...): First argument that is neither null nor an empty string.")
def _coalesce(ctx: FunctionContext, first: Any, *rest: Any) -> Any:
    from trainform.config.types import unified

    for value in unified([first, *rest]):
        if value is not None and value != "":
            return value
    raise FunctionError("all arguments are null or empty strings")


@_fn("compact", "compact(list): list of strings without nulls and empty strings.")
def _compact(ctx: FunctionContext, items: Any) -> list[str]:
    strings = (
        _want_str(item, f"element {i}")
        for i, item in enumerate(_want_list(items, "argument"))
        if item is not None
    )
    return typed(TfList(s for s in strings if s), "string")


@_fn("one", "one(list): The only element of list, null if empty; error if more.")
def _one(ctx: FunctionContext, items: Any) -> Any:
    elements = _want_list(items, "argument")
    if len(elements) > 1:
        raise FunctionError(f"list must have at most one element, got {len(elements)}")
    return elements[0] if elements else None


# --- numbers ----------------------------------------------------------------------------------


def _extreme(pick: Callable[[list[_Number]], _Number], values: tuple[Any, ...]) -> _Number:
    numbers = [_want_num(v, f"argument {i}") for i, v in enumerate(values, start=1)]
    return _num_result(pick(numbers), numbers)


@_fn("min", "min(numbers...): Smallest of the numbers.")
def _min(ctx: FunctionContext, first: Any, *rest: Any) -> _Number:
    return _extreme(min, (first, *rest))


@_fn("max", "max(numbers...): Largest of the numbers.")
def _max(ctx: FunctionContext, first: Any, *rest: Any) -> _Number:
    return _extreme(max, (first, *rest))


@_fn("abs", "abs(number): number without its sign.")
def _abs(ctx: FunctionContext, value: Any) -> _Number:
    number = _want_num(value, "argument")
    return _num_result(abs(number), [number])


@_fn("ceil", "ceil(number): Smallest whole number not less than number.")
def _ceil(ctx: FunctionContext, value: Any) -> int:
    return math.ceil(_want_num(value, "argument"))


@_fn("floor", "floor(number): Largest whole number not greater than number.")
def _floor(ctx: FunctionContext, value: Any) -> int:
    return math.floor(_want_num(value, "argument"))


@_fn("pow", "pow(base, exponent): base raised to exponent.")
def _pow(ctx: FunctionContext, base: Any, exponent: Any) -> _Number:
    x = _want_num(base, "base")
    y = _want_num(exponent, "exponent")
    # The float result comes first: it bounds the size before any exact integer power is taken.
    try:
        approx = math.pow(x, y)
    except OverflowError:
        raise FunctionError("result is too large") from None
    except ValueError:
        raise FunctionError(f"{_show(x)} to the power {_show(y)} is not a real number") from None
    if isinstance(x, int) and isinstance(y, int) and y >= 0:
        return x**y
    return approx


@_fn("signum", "signum(number): -1, 0 or 1, the sign of number.")
def _signum(ctx: FunctionContext, value: Any) -> int:
    number = _want_num(value, "argument")
    return (number > 0) - (number < 0)


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@_fn("parseint", "parseint(string, base): Integer written in base 2 to 62.")
def _parseint(ctx: FunctionContext, text: Any, base: Any) -> int:
    string = _want_str(text, "string")
    radix = _want_int(base, "base")
    if not 2 <= radix <= 62:
        raise FunctionError(f"base must be between 2 and 62, got {radix}")
    sign, body = (-1, string[1:]) if string[:1] == "-" else (1, string.removeprefix("+"))
    # As in Go, letters are case-insensitive up to base 36; above it "A".."Z" are 36..61.
    digits = body.lower() if radix <= 36 else body
    values = [_DIGITS.find(char, 0, radix) for char in digits]
    if not values or min(values) < 0:
        raise FunctionError(f"cannot parse {_quote(string)} as a base {radix} integer")
    return sign * functools.reduce(lambda acc, digit: acc * radix + digit, values, 0)


# --- type conversions -------------------------------------------------------------------------


@_fn("tostring", 'tostring(value): Number or bool as a string (1.5 -> "1.5"); null stays null.')
def _tostring(ctx: FunctionContext, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        raise FunctionError(f"cannot convert a {type_of(value)} to a string")
    return _want_str(value, "argument")


@_fn("tonumber", "tonumber(value): Number or numeric string as a number; null stays null.")
def _tonumber(ctx: FunctionContext, value: Any) -> _Number | None:
    return None if value is None else _want_num(value, "argument")


@_fn("tobool", 'tobool(value): Bool or "true"/"false" as a bool; null stays null.')
def _tobool(ctx: FunctionContext, value: Any) -> bool | None:
    return None if value is None else _want_bool(value, "argument")


@_fn("tolist", "tolist(list): The list, its elements converted to one type.")
def _tolist(ctx: FunctionContext, value: Any) -> list[Any]:
    elements, element = _as_list(value, "argument")
    return typed(TfList(elements), element)


@_fn(
    "toset",
    "toset(list): Distinct elements; scalars sorted (as strings if any is a string).",
)
def _toset(ctx: FunctionContext, value: Any) -> list[Any]:
    from trainform.config.types import make_set

    # Terraform unifies a set of mixed scalars into a set of strings: ["a", 1] -> ["1", "a"].
    elements, element = _as_list(value, "argument")
    return typed(make_set(elements), element)


@_fn("tomap", "tomap(map): The map, its values converted to one type.")
def _tomap(ctx: FunctionContext, value: Any) -> dict[str, Any]:
    table = _want_map(value, "argument")
    element = element_type_of(table)
    return typed(TfMap({k: convert(v, element) for k, v in table.items()}), element)


# --- encodings --------------------------------------------------------------------------------


@_fn("jsonencode", "jsonencode(value): Compact JSON with sorted keys.")
def _jsonencode(ctx: FunctionContext, value: Any) -> str:
    return _to_json(value)


def _reject_constant(name: str) -> Any:
    raise FunctionError(f"invalid JSON: {name} is not a JSON value")


@_fn("jsondecode", "jsondecode(string): The value the JSON text encodes.")
def _jsondecode(ctx: FunctionContext, text: Any) -> Any:
    try:
        return json.loads(_want_str(text, "argument"), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise FunctionError(f"invalid JSON: {exc.msg} at {where}") from None


def _yaml_key(key: Any) -> str:
    if isinstance(key, (str, bool)) or _is_number(key):
        return _want_str(key, "map key")
    raise FunctionError(f"map keys must be strings, numbers or bools, got {type_of(key)}")


@functools.cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    import yaml

    class _YamlLoader(yaml.SafeLoader):
        """SafeLoader giving maps string keys and leaving timestamps as the strings they
        were written as, as Terraform does."""

        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[Hashable, Any]:
            # Keys must become strings while the map is built: afterwards 1 and true would
            # already have collided as equal Python dict keys.
            self.flatten_mapping(node)
            return {
                _yaml_key(self.construct_object(key, deep=deep)): self.construct_object(
                    value, deep=deep
                )
                for key, value in node.value
            }

    _YamlLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return _YamlLoader


def _from_yaml(value: Any) -> Any:
    """value with the YAML-only types (explicit timestamps, sets, pairs) made plain."""
    if isinstance(value, dict):
        return {k: _from_yaml(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_from_yaml(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_from_yaml(v) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        raise FunctionError("binary (!!binary) values are not supported")
    return value


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error, whose str() spans several lines."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        text = " ".join(part for part in (exc.context, exc.problem) if part)
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            text += f" at line {mark.line + 1} column {mark.column + 1}"
        return text
    return " ".join(str(exc).split())


@_fn("yamldecode", "yamldecode(string): The value the YAML text (one document) encodes.")
def _yamldecode(ctx: FunctionContext, text: Any) -> Any:
    import yaml

    try:
        data = yaml.load(_want_str(text, "argument"), Loader=_yaml_loader())
        measure(data)  # aliases share what they repeat: refuse a "billion laughs" unexpanded
        return _from_yaml(data)
    except yaml.YAMLError as exc:
        raise FunctionError(f"invalid YAML: {_yaml_problem(exc)}") from None


@_fn(
    "yamlencode",
    "yamlencode(value): YAML text as Terraform writes it (sorted keys, strings double-quoted, "
    "multi-line strings as literal blocks).",
)
def _yamlencode(ctx: FunctionContext, value: Any) -> str:
    from trainform.config.yaml_encode import yaml_encode

    return yaml_encode(_json_ready(value))


@_fn("base64encode", "base64encode(string): Base64 of the string's UTF-8 bytes.")
def _base64encode(ctx: FunctionContext, text: Any) -> str:
    return base64.b64encode(_want_str(text, "argument").encode()).decode("ascii")


@_fn("base64decode", "base64decode(string): UTF-8 text of the Base64 data.")
def _base64decode(ctx: FunctionContext, text: Any) -> str:
    try:
        data = base64.b64decode(_want_str(text, "argument"), validate=True)
    except ValueError as exc:
        raise FunctionError(f"invalid Base64 data: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FunctionError("the decoded data is not valid UTF-8 text") from None


def _digest(algorithm: str, text: Any) -> str:
    # These are content fingerprints, not security, so FIPS-mode builds must not refuse them.
    data = _want_str(text, "argument").encode()
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


@_fn("sha256", "sha256(string): Hex SHA-256 digest of the string's UTF-8 bytes.")
def _sha256(ctx: FunctionContext, text: Any) -> str:
    return _digest("sha256", text)


@_fn("sha1", "sha1(string): Hex SHA-1 digest of the string's UTF-8 bytes.")
def _sha1(ctx: FunctionContext, text: Any) -> str:
    return _digest("sha1", text)


@_fn("md5", "md5(string): Hex MD5 digest of the string's UTF-8 bytes.")
def _md5(ctx: FunctionContext, text: Any) -> str:
    return _digest("md5", text)


# The rest of Terraform's library, one module per family; importing them registers them.
from trainform.config import (  # noqa: E402
    functions_collections,
    functions_net,
    functions_text,
    functions_time,
)

del functions_collections, functions_net, functions_text, functions_time


# --- templates --------------------------------------------------------------------------------


@_fn(
    "templatefile",
    "templatefile(path, vars): The template file at path (inside the configuration) rendered "
    "with vars only in scope.",
)
def _templatefile(ctx: FunctionContext, path: Any, variables: Any) -> Any:
    from trainform.config.templates import templatefile

    return templatefile(ctx, path, variables)


@_fn(
    "templatestring",
    "templatestring(ref, vars): The string that ref names (not a literal) rendered as a "
    "template with vars only in scope.",
)
def _templatestring(ctx: FunctionContext, text: Any, variables: Any) -> Any:
    from trainform.config.templates import templatestring

    return templatestring(ctx, text, variables)
