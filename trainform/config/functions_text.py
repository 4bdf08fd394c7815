"""Terraform's string, encoding, hashing and file functions that functions.py does not hold:
``trim``, ``chomp``, ``indent``, ``formatlist``, ``urlencode``, ``csvdecode``,
``textencodebase64``, the base64 digests, the ``file*`` variants, ``fileset``, ``uuid``...
"""

from __future__ import annotations

import base64
import codecs
import csv
import gzip
import hashlib
import io
import os
import re
import uuid
from typing import Any
from urllib.parse import quote_plus

from trainform.config.functions import (
    _expand_home,
    _fn,
    _format,
    _quote,
    _too_long,
    _want_int,
    _want_str,
)
from trainform.config.types import typed
from trainform.config.values import (
    MAX_COLLECTION_SIZE,
    UNKNOWN,
    FunctionContext,
    FunctionError,
    LimitError,
    TfList,
    TfSet,
)

# --- strings ----------------------------------------------------------------------------------


@_fn("trim", "trim(string, characters): string without the given characters at either end.")
def _trim(ctx: FunctionContext, text: Any, cutset: Any) -> str:
    return _want_str(text, "string").strip(_want_str(cutset, "characters"))


@_fn("trimprefix", "trimprefix(string, prefix): string without prefix at its start.")
def _trimprefix(ctx: FunctionContext, text: Any, prefix: Any) -> str:
    return _want_str(text, "string").removeprefix(_want_str(prefix, "prefix"))


@_fn("trimsuffix", "trimsuffix(string, suffix): string without suffix at its end.")
def _trimsuffix(ctx: FunctionContext, text: Any, suffix: Any) -> str:
    return _want_str(text, "string").removesuffix(_want_str(suffix, "suffix"))


_TRAILING_NEWLINES = re.compile(r"(?:\r\n|\n)+\Z")


@_fn("chomp", "chomp(string): string without its trailing newlines.")
def _chomp(ctx: FunctionContext, text: Any) -> str:
    return _TRAILING_NEWLINES.sub("", _want_str(text, "argument"))


@_fn(
    "indent",
    "indent(spaces, string): string with spaces added before every line but the first.",
)
def _indent(ctx: FunctionContext, spaces: Any, text: Any) -> str:
    count = _want_int(spaces, "spaces")
    string = _want_str(text, "string")
    pad = " " * max(count, 0)
    _too_long(len(string) + string.count("\n") * len(pad))
    return string.replace("\n", "\n" + pad)


@_fn("strcontains", "strcontains(string, substring): Whether string contains substring.")
def _strcontains(ctx: FunctionContext, text: Any, substr: Any) -> bool:
    return _want_str(substr, "substring") in _want_str(text, "string")


@_fn(
    "formatlist",
    "formatlist(spec, values...): format() applied element by element: list arguments must "
    "have one length, other arguments are repeated.",
)
def _formatlist(ctx: FunctionContext, spec: Any, *args: Any) -> list[str]:
    lengths = {len(a) for a in args if isinstance(a, list)}
    if len(lengths) > 1:
        raise FunctionError(f"all list arguments must have the same length, got {sorted(lengths)}")
    count = lengths.pop() if lengths else 1
    out: list[str] = []
    total = 0
    for i in range(count):
        row = [a[i] if isinstance(a, list) else a for a in args]
        out.append(_format(ctx, spec, *row))
        total += len(out[-1])
        _too_long(total)
    return typed(TfList(out), "string")


# --- encodings --------------------------------------------------------------------------------


@_fn("urlencode", "urlencode(string): string escaped for a URL query (spaces as +).")
def _urlencode(ctx: FunctionContext, text: Any) -> str:
    return quote_plus(_want_str(text, "argument"), safe="~")


@_fn(
    "csvdecode",
    "csvdecode(string): The CSV text's rows as maps from its header's column names to strings.",
)
def _csvdecode(ctx: FunctionContext, text: Any) -> list[Any]:
    string = _want_str(text, "argument")
    try:
        rows = list(csv.reader(io.StringIO(string), strict=True))
    except csv.Error as exc:
        raise FunctionError(f"invalid CSV: {exc}") from None
    if not rows:
        raise FunctionError("missing header line")
    header, *body = rows
    out = []
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise FunctionError(
                f"line {number}: {len(row)} fields but the header has {len(header)}"
            )
        out.append(dict(zip(header, row, strict=True)))
    # Each row is an object of the header's columns, all strings (also when there are none).
    return typed(TfList(out), ("object", tuple((name, "string") for name in sorted(header))))


def _codec(name: Any) -> str:
    encoding = _want_str(name, "encoding")
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise FunctionError(f"unsupported encoding {_quote(encoding)}") from None


@_fn(
    "textencodebase64",
    "textencodebase64(string, encoding): Base64 of the string in a character encoding "
    '(e.g. "UTF-16LE").',
)
def _textencodebase64(ctx: FunctionContext, text: Any, encoding: Any) -> str:
    codec = _codec(encoding)
    try:
        data = _want_str(text, "string").encode(codec)
    except UnicodeEncodeError as exc:
        raise FunctionError(f"the string cannot be written in {codec}: {exc.reason}") from None
    return base64.b64encode(data).decode("ascii")


@_fn(
    "textdecodebase64",
    "textdecodebase64(string, encoding): Text of Base64 data in a character encoding.",
)
def _textdecodebase64(ctx: FunctionContext, text: Any, encoding: Any) -> str:
    codec = _codec(encoding)
    try:
        data = base64.b64decode(_want_str(text, "string"), validate=True)
    except ValueError as exc:
        raise FunctionError(f"invalid Base64 data: {exc}") from None
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise FunctionError(f"the data is not valid {codec}: {exc.reason}") from None


@_fn("base64gzip", "base64gzip(string): Base64 of the gzip-compressed UTF-8 string.")
def _base64gzip(ctx: FunctionContext, text: Any) -> str:
    data = gzip.compress(_want_str(text, "argument").encode(), mtime=0)
    return base64.b64encode(data).decode("ascii")


def _hash(algorithm: str, data: bytes) -> hashlib._Hash:
    return hashlib.new(algorithm, data, usedforsecurity=False)


def _string_hashes(name: str, algorithm: str, bits: str) -> None:
    @_fn(name, f"{name}(string): Hex {bits} digest of the string's UTF-8 bytes.")
    def _hex(ctx: FunctionContext, text: Any) -> str:
        return _hash(algorithm, _want_str(text, "argument").encode()).hexdigest()


def _base64_hashes(name: str, algorithm: str, bits: str) -> None:
    @_fn(name, f"{name}(string): Base64 of the {bits} digest of the string's UTF-8 bytes.")
    def _b64(ctx: FunctionContext, text: Any) -> str:
        digest = _hash(algorithm, _want_str(text, "argument").encode()).digest()
        return base64.b64encode(digest).decode("ascii")


_string_hashes("sha512", "sha512", "SHA-512")
_base64_hashes("base64sha256", "sha256", "SHA-256")
_base64_hashes("base64sha512", "sha512", "SHA-512")


# --- files ------------------------------------------------------------------------------------


def _read(ctx: FunctionContext, path: Any) -> bytes:
    return ctx.read_file(_expand_home(_want_str(path, "path")))


@_fn("filebase64", "filebase64(path): Base64 of the file's bytes.")
def _filebase64(ctx: FunctionContext, path: Any) -> str:
    return base64.b64encode(_read(ctx, path)).decode("ascii")


def _file_hashes(name: str, algorithm: str, bits: str, encoding: str) -> None:
    @_fn(name, f"{name}(path): {encoding} {bits} digest of the file's bytes.")
    def _digest(ctx: FunctionContext, path: Any) -> str:
        digest = _hash(algorithm, _read(ctx, path))
        if encoding == "Hex":
            return digest.hexdigest()
        return base64.b64encode(digest.digest()).decode("ascii")


_file_hashes("filemd5", "md5", "MD5", "Hex")
_file_hashes("filesha1", "sha1", "SHA-1", "Hex")
_file_hashes("filesha512", "sha512", "SHA-512", "Hex")
_file_hashes("filebase64sha256", "sha256", "SHA-256", "Base64 of the")
_file_hashes("filebase64sha512", "sha512", "SHA-512", "Base64 of the")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression for a doublestar glob, as Terraform's fileset() matches: ``*``
    and ``?`` within one path segment, ``**`` across segments, ``[...]`` classes and
    ``{a,b}`` alternatives."""
    out: list[str] = []
    i = 0
    depth = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise FunctionError(f"invalid pattern {_quote(pattern)}: unclosed [")
            body = pattern[i + 1 : end]
            if body.startswith("!") or body.startswith("^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    if depth:
        raise FunctionError(f"invalid pattern {_quote(pattern)}: unclosed {{")
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as exc:
        raise FunctionError(f"invalid pattern {_quote(pattern)}: {exc}") from None


@_fn(
    "fileset",
    "fileset(path, pattern): The set of file names under path (relative to it) that match "
    "the glob pattern (*, **, ?, [...], {a,b}).",
)
def _fileset(ctx: FunctionContext, path: Any, pattern: Any) -> list[str]:
    folder = _expand_home(_want_str(path, "path"))
    glob = _want_str(pattern, "pattern")
    matcher = _glob_regex(glob)
    root = ctx.base_dir / folder
    found: list[str] = []
    seen = 0
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        relative = os.path.relpath(directory, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in files:
            seen += 1
            if seen > MAX_COLLECTION_SIZE:
                raise LimitError(
                    f"more than {MAX_COLLECTION_SIZE} files under {_quote(folder)} "
                    "(the collection size limit)"
                )
            if matcher.match(prefix + name) and os.path.isfile(os.path.join(directory, name)):
                found.append(prefix + name)
    return typed(TfSet(sorted(found)), "string")


# --- identifiers ------------------------------------------------------------------------------


@_fn(
    "uuid",
    "uuid(): A random UUID (v4); unknown at plan time, decided at apply, as in Terraform.",
)
def _uuid(ctx: FunctionContext) -> Any:
    return str(uuid.uuid4()) if ctx.apply_time else UNKNOWN


_NAMESPACES = {
    "dns": uuid.NAMESPACE_DNS,
    "url": uuid.NAMESPACE_URL,
    "oid": uuid.NAMESPACE_OID,
    "x500": uuid.NAMESPACE_X500,
}


@_fn(
    "uuidv5",
    'uuidv5(namespace, name): The name-based (SHA-1) UUID of name in namespace ("dns", '
    '"url", "oid", "x500" or a UUID).',
)
def _uuidv5(ctx: FunctionContext, namespace: Any, name: Any) -> str:
    space = _want_str(namespace, "namespace")
    base = _NAMESPACES.get(space)
    if base is None:
        try:
            base = uuid.UUID(space)
        except ValueError:
            raise FunctionError(
                f'namespace must be "dns", "url", "oid", "x500" or a UUID, got {_quote(space)}'
            ) from None
    return str(uuid.uuid5(base, _want_str(name, "name")))
