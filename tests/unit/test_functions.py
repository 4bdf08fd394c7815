"""Tests for the built-in expression functions (trainform.config.functions)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from trainform.config.functions import FUNCTION_DOCS, FUNCTIONS, function_names
from trainform.config.values import FunctionContext, FunctionError


@pytest.fixture
def ctx(tmp_path: Path) -> FunctionContext:
    return FunctionContext(base_dir=tmp_path)


def call(ctx: FunctionContext, name: str, *args: Any) -> Any:
    return FUNCTIONS[name](ctx, *args)


# (function, arguments, expected result); every function without file access appears here.
CASES: list[tuple[str, tuple[Any, ...], Any]] = [
    # strings
    ("format", ("Hello, %s!", "Ander"), "Hello, Ander!"),
    ("format", ("%d items", 3), "3 items"),
    ("format", ("%05d|%-4d|%+d", 42, 7, 5), "00042|7   |+5"),
    ("format", ("%.2f", 3.14159), "3.14"),
    ("format", ("%f", 1), "1.000000"),
    ("format", ("%q", 'a"b'), '"a\\"b"'),
    ("format", ("%v %v %v %v", "s", 1.5, [1, "a"], {"k": True}), 's 1.5 [1,"a"] {"k":true}'),
    ("format", ("%t and %t", True, "false"), "true and false"),
    ("format", ("100%%",), "100%"),
    ("format", ("%s", 2), "2"),
    ("format", ("%x %X %o %b", 255, 255, 8, 5), "ff FF 10 101"),
    ("format", ("%[2]s %[1]s", "a", "b"), "b a"),
    ("format", ("%6s|%-6s|%.2s", "ab", "ab", "abc"), "    ab|ab    |ab"),
    ("format", ("%#v", "x"), '"x"'),
    ("join", (", ", ["a", "b", "c"]), "a, b, c"),
    ("join", ("-", ["a"], [1, True]), "a-1-true"),
    ("join", (",", []), ""),
    ("split", (",", "a,b,,c"), ["a", "b", "", "c"]),
    ("split", (",", ""), [""]),
    ("split", ("", "abc"), ["a", "b", "c"]),
    ("lower", ("HeLLo",), "hello"),
    ("upper", ("HeLLo",), "HELLO"),
    ("title", ("hello wORLD-foo_bar",), "Hello WORLD-Foo_bar"),
    ("trimspace", ("  \t hi there\n",), "hi there"),
    ("replace", ("1 + 2 + 3", "+", "-"), "1 - 2 - 3"),
    ("replace", ("hello world", "/w(or)ld/", "W${1}LD"), "hello WorLD"),
    ("replace", ("a1b22", "/[0-9]+/", "<$0>"), "a<1>b<22>"),
    ("replace", ("key=value", "/(?P<k>\\w+)=(?P<v>\\w+)/", "${v}=${k} $$"), "value=key $"),
    # Go's (RE2's) rule: an empty match right after the previous match is not replaced
    ("replace", ("baaac", "/a*/", "-"), "-b-c-"),
    ("regex", ("[a-z]+", "53453453.345345aaabbbccc23454"), "aaabbbccc"),
    ("regex", ("(\\d\\d\\d\\d)-(\\d\\d)", "2019-02-01"), ["2019", "02"]),
    (
        "regex",
        ("^(?P<user>[^@]+)@(?P<host>.*)$", "me@example.com"),
        {"user": "me", "host": "example.com"},
    ),
    ("regex", ("(a)|(b)", "b"), [None, "b"]),
    ("regexall", ("[a-z]+", "1234abcd5678efgh9"), ["abcd", "efgh"]),
    ("regexall", ("(\\d+)x", "1x 22x"), [["1"], ["22"]]),
    ("regexall", ("z", "abc"), []),
    ("substr", ("hello world", 1, 4), "ello"),
    ("substr", ("hello world", 6, -1), "world"),
    ("substr", ("hello world", -5, 3), "wor"),
    ("substr", ("hello", 10, 2), ""),
    ("startswith", ("trainform", "train"), True),
    ("startswith", ("trainform", "form"), False),
    ("endswith", ("trainform", "form"), True),
    ("endswith", ("trainform", "train"), False),
    ("strrev", ("abc",), "cba"),
    # collections
    ("concat", (["a"], [], ["b", "c"]), ["a", "b", "c"]),
    ("merge", ({"a": 1, "b": 2}, None, {"b": 3}), {"a": 1, "b": 3}),
    ("merge", (), {}),
    ("length", ([1, 2, 3],), 3),
    ("length", ({"a": 1},), 1),
    ("length", ("héllo",), 5),
    ("lookup", ({"a": 1}, "a"), 1),
    ("lookup", ({"a": 1}, "b", "dflt"), "dflt"),
    ("lookup", ({"a": 1}, "b", None), None),
    ("keys", ({"b": 1, "a": 2},), ["a", "b"]),
    ("values", ({"b": 1, "a": 2},), [2, 1]),
    ("contains", (["a", "b"], "b"), True),
    ("contains", ([1, 2], 2.0), True),
    ("contains", ([1], True), False),
    ("contains", ([[1, 2]], [1, 2]), True),
    ("element", (["a", "b", "c"], 1), "b"),
    ("element", (["a", "b", "c"], 4), "b"),
    ("index", (["a", "b", "c"], "c"), 2),
    ("flatten", ([["a", ["b"]], [], "c"],), ["a", "b", "c"]),
    # As Terraform 1.11: the elements are converted to one type (string) first.
    ("distinct", (["a", "b", "a", 1, 1.0, True],), ["a", "b", "1", "true"]),
    ("reverse", ([1, 2, 3],), [3, 2, 1]),
    ("sort", (["b", "a", "C"],), ["C", "a", "b"]),
    ("sort", ([3, 10, 1],), ["1", "10", "3"]),
    ("range", (3,), [0, 1, 2]),
    ("range", (1, 4), [1, 2, 3]),
    ("range", (0, 1, 0.25), [0.0, 0.25, 0.5, 0.75]),
    ("range", (5, 0, -2), [5, 3, 1]),
    ("range", (-2,), [0, -1]),
    ("range", (0, 5, -1), []),
    ("slice", (["a", "b", "c", "d"], 1, 3), ["b", "c"]),
    ("slice", (["a"], 1, 1), []),
    ("zipmap", (["a", "b"], [1, 2]), {"a": 1, "b": 2}),
    ("coalesce", (None, "", "x", "y"), "x"),
    ("coalesce", (None, 0), 0),
    ("compact", (["a", "", None, "b"],), ["a", "b"]),
    ("one", ([],), None),
    ("one", (["x"],), "x"),
    # numbers
    ("min", (3, 1, 2), 1),
    ("min", (1.5, 2), 1.5),
    ("max", (1, 2), 2),
    ("max", (1.0, 2), 2.0),
    ("max", ("3", 2), 3),
    ("abs", (-3,), 3),
    ("abs", (-2.5,), 2.5),
    ("ceil", (4.1,), 5),
    ("ceil", (-4.1,), -4),
    ("floor", (4.9,), 4),
    ("floor", (-4.1,), -5),
    ("pow", (2, 10), 1024),
    ("pow", (2, -1), 0.5),
    ("pow", (4, 0.5), 2.0),
    ("signum", (-7,), -1),
    ("signum", (0,), 0),
    ("signum", (0.5,), 1),
    ("parseint", ("100", 10), 100),
    ("parseint", ("FF", 16), 255),
    ("parseint", ("-101", 2), -5),
    ("parseint", ("Zz", 62), 61 * 62 + 35),
    # conversions
    ("tostring", (1,), "1"),
    ("tostring", (1.5,), "1.5"),
    ("tostring", (2.0,), "2"),
    ("tostring", (1e-7,), "0.0000001"),
    ("tostring", (True,), "true"),
    ("tostring", ("s",), "s"),
    ("tostring", (None,), None),
    ("tonumber", ("42",), 42),
    ("tonumber", ("-1.5e3",), -1500.0),
    ("tonumber", (7,), 7),
    ("tonumber", (None,), None),
    ("tobool", ("true",), True),
    ("tobool", (False,), False),
    ("tobool", (None,), None),
    ("tolist", ([1, "a"],), ["1", "a"]),
    ("toset", (["b", "a", "b"],), ["a", "b"]),
    ("toset", ([3, 1, 3],), [1, 3]),
    ("toset", (["a", 1, "1"],), ["1", "a"]),
    ("tomap", ({"a": 1},), {"a": 1}),
    # encodings
    ("jsonencode", ({"b": [1, 2.0, None], "a": "x"},), '{"a":"x","b":[1,2,null]}'),
    ("jsonencode", ("é",), '"é"'),
    ("jsonencode", ("<\u2028",), '"\\u003c\\u2028"'),
    ("jsondecode", ('{"a": [1, 1.5, true, null]}',), {"a": [1, 1.5, True, None]}),
    (
        "yamldecode",
        ("a: 1\nb: [x, y]\nwhen: 2024-01-02\n",),
        {"a": 1, "b": ["x", "y"], "when": "2024-01-02"},
    ),
    ("yamldecode", ("1: one\ntrue: yes\n",), {"1": "one", "true": True}),
    ("yamldecode", ("",), None),
    ("yamlencode", ({"b": [1, 2], "a": "x"},), '"a": "x"\n"b":\n- 1\n- 2\n'),
    ("yamlencode", ("x",), '"x"\n'),
    ("base64encode", ("hello",), "aGVsbG8="),
    ("base64decode", ("aGVsbG8=",), "hello"),
    ("sha256", ("hello",), hashlib.sha256(b"hello").hexdigest()),
    ("sha1", ("hello",), hashlib.sha1(b"hello").hexdigest()),
    ("md5", ("hello",), "5d41402abc4b2a76b9719d911017c592"),
    # paths
    ("basename", ("foo/bar/baz.txt",), "baz.txt"),
    ("basename", ("foo/bar/",), "bar"),
    ("basename", ("/",), "/"),
    ("basename", ("",), "."),
    ("dirname", ("foo/bar/baz.txt",), "foo/bar"),
    ("dirname", ("baz.txt",), "."),
    ("dirname", ("/baz.txt",), "/"),
    ("pathexpand", ("/abs/path",), "/abs/path"),
    ("pathexpand", ("~user/x",), "~user/x"),
    # Terraform's type rules
    ("coalesce", (1, "hello"), "1"),
    ("coalesce", (True, "hello"), "true"),
    ("tomap", ({"a": 1, "b": "x"},), {"a": "1", "b": "x"}),
    ("element", (["a", "b", "c"], -1), "c"),
    ("length", ("👾🕹️",), 2),
    ("length", ("👨‍👩‍👧",), 1),
    ("length", ("a\r\nb",), 3),
    # the rest of Terraform's library
    ("sum", ([10, 13, 6, 5],), 34),
    ("sum", ([0.1, 0.2],), 0.3),
    ("alltrue", ([],), True),
    ("alltrue", ([True, "false"],), False),
    ("anytrue", ([False, True],), True),
    ("coalescelist", ([], ["a"]), ["a"]),
    ("setunion", (["b", "a"], ["c"]), ["a", "b", "c"]),
    ("setintersection", (["a", "b"], ["b", "c"]), ["b"]),
    ("setsubtract", (["a", "b", "c"], ["a"]), ["b", "c"]),
    ("setproduct", (["a", "b"], [1]), [["a", 1], ["b", 1]]),
    ("setproduct", (["a", 2],), [["a"], ["2"]]),
    ("chunklist", ([1, 2, 3], 2), [[1, 2], [3]]),
    ("chunklist", ([1, 2], 0), [[1, 2]]),
    ("transpose", ({"a": ["1", "2"], "b": ["2"]},), {"1": ["a"], "2": ["a", "b"]}),
    ("matchkeys", (["i1", "i2"], ["east", "west"], ["west"]), ["i2"]),
    ("log", (8, 2), 3.0),
    ("sensitive", ("x",), "x"),
    ("nonsensitive", ("x",), "x"),
    ("ephemeralasnull", ("x",), "x"),
    ("trim", ("?!hello?!", "!?"), "hello"),
    ("trimprefix", ("helloworld", "hello"), "world"),
    ("trimsuffix", ("helloworld", "world"), "hello"),
    ("chomp", ("hello\r\n\n",), "hello"),
    ("indent", (2, "a\nb"), "a\n  b"),
    ("strcontains", ("hello", "ell"), True),
    ("formatlist", ("%s=%d", ["a", "b"], 1), ["a=1", "b=1"]),
    ("urlencode", ("a b&c/~",), "a+b%26c%2F~"),
    ("csvdecode", ("a,b\n1,2\n",), [{"a": "1", "b": "2"}]),
    ("textencodebase64", ("Hello", "UTF-16LE"), "SABlAGwAbABvAA=="),
    ("textdecodebase64", ("SABlAGwAbABvAA==", "UTF-16LE"), "Hello"),
    ("sha512", ("",), hashlib.sha512(b"").hexdigest()),
    ("base64sha256", ("hello world",), "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="),
    (
        "base64sha512",
        ("",),
        "z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
    ),
    ("uuidv5", ("dns", "www.terraform.io"), "a5008fae-b28c-5ba5-96cd-82b4c53552d6"),
    ("cidrhost", ("10.12.112.0/20", 16), "10.12.112.16"),
    ("cidrhost", ("10.12.112.0/20", -2), "10.12.127.254"),
    ("cidrnetmask", ("172.16.0.0/12",), "255.240.0.0"),
    ("cidrsubnet", ("10.0.0.0/8", 8, 2), "10.2.0.0/16"),
    ("cidrsubnet", ("fd00:fd12:3456:7890::/56", 16, 162), "fd00:fd12:3456:7800:a200::/72"),
    (
        "cidrsubnets",
        ("10.1.0.0/16", 4, 4, 8, 4),
        ["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"],
    ),
    ("timeadd", ("2017-11-22T00:00:00Z", "10m"), "2017-11-22T00:10:00Z"),
    ("timeadd", ("2017-11-22T00:00:00-05:00", "-1.5h"), "2017-11-21T22:30:00-05:00"),
    ("timecmp", ("2017-11-22T00:00:00Z", "2017-11-22T01:00:00+01:00"), 0),
    ("formatdate", ("DD MMM YYYY hh:mm ZZZ", "2018-01-02T23:12:01Z"), "02 Jan 2018 23:12 UTC"),
    ("formatdate", ("h'h'mm", "2018-01-02T23:12:01-08:00"), "23h12"),
]


@pytest.mark.parametrize(("name", "args", "expected"), CASES)
def test_function_results(ctx: FunctionContext, name: str, args: tuple[Any, ...], expected: Any):
    result = call(ctx, name, *args)
    assert result == expected
    # 2 == 2.0 in Python, but the int/float distinction is part of the contract. (A list or
    # map may be a TfList/TfSet/TfMap: Terraform's list, set or map rather than tuple or object.)
    assert type(result) is type(expected) or (
        isinstance(expected, (list, dict)) and isinstance(result, type(expected))
    )


def test_every_function_is_documented_and_tested():
    assert function_names() == sorted(FUNCTIONS)
    assert set(FUNCTION_DOCS) == set(FUNCTIONS)
    for name, doc in FUNCTION_DOCS.items():
        assert doc.startswith(f"{name}("), doc
        assert "\n" not in doc
    tested = {name for name, _, _ in CASES} | {
        "file",
        "filesha256",
        "fileexists",
        "abspath",
        # tested in test_functions_terraform.py: files, random and time-of-day results,
        # the lazily evaluated try/can, the removed list/map
        *("filebase64", "filebase64sha256", "filebase64sha512", "filemd5", "filesha1"),
        *("filesha512", "fileset", "base64gzip", "uuid", "timestamp", "plantimestamp"),
        *("try", "can", "list", "map", "type"),
        *("templatefile", "templatestring"),  # with the templates
    }
    assert set(FUNCTIONS) <= tested


def test_file_reads_text_and_records_hash(ctx: FunctionContext, tmp_path: Path):
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "train.txt"
    path.write_text("héllo\n", encoding="utf-8")
    assert call(ctx, "file", "data/train.txt") == "héllo\n"
    expected = hashlib.sha256("héllo\n".encode()).hexdigest()
    assert ctx.files_read == {str(path.resolve()): expected}


def test_filesha256_hashes_bytes_and_records(ctx: FunctionContext, tmp_path: Path):
    payload = bytes(range(256))
    (tmp_path / "blob.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    assert call(ctx, "filesha256", "blob.bin") == digest
    assert ctx.files_read == {str((tmp_path / "blob.bin").resolve()): digest}


def test_file_rejects_binary(ctx: FunctionContext, tmp_path: Path):
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe")
    with pytest.raises(FunctionError, match=r'^file: "blob.bin" is not valid UTF-8 text$'):
        call(ctx, "file", "blob.bin")


def test_file_missing(ctx: FunctionContext):
    with pytest.raises(FunctionError, match=r"^file: cannot read file 'nope.txt'"):
        call(ctx, "file", "nope.txt")
    assert ctx.files_read == {}


def test_fileexists_does_not_record(ctx: FunctionContext, tmp_path: Path):
    (tmp_path / "here.txt").write_text("x")
    assert call(ctx, "fileexists", "here.txt") is True
    assert call(ctx, "fileexists", "absent.txt") is False
    assert call(ctx, "fileexists", str(tmp_path / "here.txt")) is True
    assert ctx.files_read == {}
    with pytest.raises(FunctionError, match="exists but is not a regular file"):
        call(ctx, "fileexists", ".")


def test_abspath_is_relative_to_base_dir(ctx: FunctionContext, tmp_path: Path):
    assert call(ctx, "abspath", "a/../b.txt") == os.path.join(str(tmp_path), "b.txt")
    assert call(ctx, "abspath", "/etc/x") == "/etc/x"


def test_pathexpand_home(ctx: FunctionContext, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", "/home/tester")
    assert call(ctx, "pathexpand", "~") == "/home/tester"
    assert call(ctx, "pathexpand", "~/data") == "/home/tester/data"


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("lookup", ({"a": 1}, "x"), 'lookup: key "x" not found and no default given'),
        ("substr", ("abc", 1), "substr: expected 3 arguments, got 2"),
        ("lookup", ({},), "lookup: expected 2 to 3 arguments, got 1"),
        ("min", (), "min: expected at least 1 argument, got 0"),
        ("max", (), "max: expected at least 1 argument, got 0"),
        ("upper", ("a", "b"), "upper: expected 1 argument, got 2"),
        ("upper", ([1],), "upper: argument must be a string, got list"),
        ("max", (1, "x"), 'max: argument 2 must be a number, got string "x"'),
        ("max", (1, True), "max: argument 2 must be a number, got bool"),
        ("tonumber", ("12abc",), 'tonumber: argument must be a number, got string "12abc"'),
        ("tonumber", ("1_000",), 'tonumber: argument must be a number, got string "1_000"'),
        ("tostring", ([1],), "tostring: cannot convert a list to a string"),
        ("tobool", ("yes",), "tobool: argument must be a bool, got string"),
        ("format", ("%s %s", "a"), 'format: not enough arguments for "%s": it needs value 2'),
        ("format", ("%s", "a", "b"), "format: too many arguments: 2 given but"),
        ("format", ("%d", 1.5), 'format: value 1 for "%d" must be a whole number, got 1.5'),
        ("format", ("%d", "x"), 'format: value 1 for "%d" must be a number, got string "x"'),
        ("format", ("%s", [1]), 'format: value 1 for "%s" must be a string, got list'),
        ("format", ("%s", None), 'format: value 1 for "%s" is null'),
        ("format", ("%y", 1), 'format: unsupported verb "%y"'),
        ("format", ("50%",), "format: format string ends with an incomplete verb"),
        ("jsondecode", ("{bad",), "jsondecode: invalid JSON: Expecting property name"),
        ("jsondecode", ("NaN",), "jsondecode: invalid JSON: NaN is not a JSON value"),
        ("jsonencode", (float("inf"),), "jsonencode: infinity and NaN cannot be encoded"),
        ("yamldecode", ("a: [1",), "yamldecode: invalid YAML: "),
        ("yamldecode", ("a: 1\n---\nb: 2\n",), "yamldecode: invalid YAML: expected a single"),
        ("base64decode", ("!!!",), "base64decode: invalid Base64 data"),
        ("base64decode", ("/w==",), "base64decode: the decoded data is not valid UTF-8"),
        ("element", ([], 0), "element: cannot take an element of an empty list"),
        ("index", (["a"], "b"), 'index: "b" is not in the list'),
        ("slice", ([1, 2], 0, 3), "slice: end index 3 is past the end of the list (length 2)"),
        ("slice", ([1, 2], 2, 1), "slice: start index 2 is greater than end index 1"),
        ("zipmap", (["a"], [1, 2]), "zipmap: 1 keys but 2 values"),
        ("coalesce", (None, ""), "coalesce: all arguments are null or empty strings"),
        ("one", ([1, 2],), "one: list must have at most one element, got 2"),
        ("range", (0, 1, 0), "range: step must not be zero"),
        ("range", (0, 5000), "range: more than 1024 values would be generated"),
        ("parseint", ("12", 1), "parseint: base must be between 2 and 62, got 1"),
        ("parseint", ("19", 8), 'parseint: cannot parse "19" as a base 8 integer'),
        ("parseint", ("", 10), 'parseint: cannot parse "" as a base 10 integer'),
        ("pow", (10.0, 400), "pow: result is too large"),
        ("pow", (-8, 0.5), "pow: -8 to the power 0.5 is not a real number"),
        ("ceil", (float("inf"),), "ceil: cannot convert float infinity to integer"),
        ("length", (5,), "length: argument must be a string, list or map, got number"),
        ("keys", (["a"],), "keys: argument must be a map, got list"),
        ("concat", (["a"], "b"), "concat: argument 2 must be a list, got string"),
        ("merge", ({}, [1]), "merge: argument 2 must be a map, got list"),
        ("join", (",", ["a", None]), "join: element 1 of list 1 must be a string, got null"),
        ("replace", ("x", "/(/", "y"), 'replace: invalid regular expression "/(/"'),
        ("regex", ("(?=a)", "a"), 'regex: invalid regular expression "(?=a)"'),
        ("regex", ("b", "a"), "regex: the pattern did not match any part of the string"),
        ("regexall", ("(a)(?P<n>b)", "ab"), 'regexall: the pattern "(a)(?P<n>b)" mixes named'),
        ("substr", ("abc", 0.5, 1), "substr: offset must be a whole number, got 0.5"),
    ],
)
def test_errors(ctx: FunctionContext, name: str, args: tuple[Any, ...], message: str):
    with pytest.raises(FunctionError) as info:
        call(ctx, name, *args)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_no_raw_exception_escapes_on_wrong_types(ctx: FunctionContext):
    """Every function, given arguments of every wrong shape, fails only with FunctionError."""
    odd_values: list[Any] = [None, True, -1, 2.5, "", "x", [], [None], {}, {"a": [1]}]
    for name in function_names():
        for value in odd_values:
            for args in ((value,), (value, value), (value, value, value)):
                with contextlib.suppress(FunctionError):
                    call(ctx, name, *args)
