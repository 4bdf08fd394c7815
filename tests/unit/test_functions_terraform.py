"""Terraform's language rules that go beyond one function's arguments: lazy try/can, type
unification in conditionals, type(), timestamp/uuid at plan and apply time, file functions,
size limits, and the console rendering of values."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from trainform.config.display import render_value
from trainform.config.expr import Scope, evaluate
from trainform.config.functions import FUNCTIONS
from trainform.config.source import Expr, parse_expression_text
from trainform.config.values import UNKNOWN, FunctionContext, FunctionError, TfList, TfSet
from trainform.errors import ConfigError, Pos


def ev(text: str, tmp_path: Path | None = None, apply_time: bool = False, **values: Any) -> Any:
    ctx = FunctionContext(tmp_path or Path("."), apply_time=apply_time)
    scope_values = {"var": {}, "local": {}, **values}
    return evaluate(Expr(parse_expression_text(text), Pos("t.hcl", 1, 1)), Scope(scope_values, ctx))


def shown(text: str, **values: Any) -> str:
    return render_value(ev(text, **values))


# --- try and can ------------------------------------------------------------------------------


def test_try_returns_the_first_argument_that_evaluates() -> None:
    assert ev('try(local.foo.boop, "fallback")', local={"foo": {"bar": "baz"}}) == "fallback"
    assert ev('try(local.foo.bar, "fallback")', local={"foo": {"bar": "baz"}}) == "baz"
    assert ev('try(tonumber("x"), 0)') == 0
    assert ev('can(regex("^[a-z]+$", "abc"))') is True
    assert ev('can(regex("^[a-z]+$", "ABC"))') is False


def test_try_does_not_hide_a_reference_to_an_undeclared_name() -> None:
    """As in Terraform, only dynamic errors are caught: a name that is not declared at all
    is a mistake no fallback can make right."""
    with pytest.raises(ConfigError, match=r"undeclared local\.nonexist"):
        ev('try(local.nonexist, "fallback")', local={"foo": 1})
    with pytest.raises(ConfigError, match=r"undeclared var\.typo"):
        ev("can(var.typo)", var={"name": "x"})
    with pytest.raises(ConfigError, match="unknown reference 'nope'"):
        ev('try(nope.x, "fallback")')


def test_try_with_every_argument_failing_says_so() -> None:
    with pytest.raises(ConfigError, match=r"try\(\): no expression succeeded"):
        ev('try(tonumber("x"), tobool("y"))')


def test_try_of_an_unknown_value_is_unknown() -> None:
    assert ev('try(local.x, "fallback")', local={"x": UNKNOWN}) is UNKNOWN


# --- types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('true ? 1 : "a"', '"1"'),
        ('false ? 1 : "a"', '"a"'),
        ("true ? 1 : null", "1"),
        ("true ? { a = 1 } : {}", 'tomap({\n  "a" = 1\n})'),
        ("false ? [1] : []", "tolist([])"),
        ('tolist(["a", "b", 3])', 'tolist([\n  "a",\n  "b",\n  "3",\n])'),
        ('tomap({ a = 1, b = "x" })', 'tomap({\n  "a" = "1"\n  "b" = "x"\n})'),
        ('coalesce(1, "hello")', '"1"'),
        ('coalesce(true, "hello")', '"true"'),
        ('toset(["b", "a", "b"])', 'toset([\n  "a",\n  "b",\n])'),
        (
            'type({ a = 1, b = ["x", 2] })',
            "object({\n    a: number,\n    b: tuple([\n        string,\n        number,\n    ]),\n})",
        ),
        ('type(tolist(["a"]))', "list(string)"),
        ("type(tolist([]))", "list(dynamic)"),
        ("type(toset([1]))", "set(number)"),
        ("type(tomap({ a = [1] }))", "map(\n    tuple([\n        number,\n    ]),\n)"),
        ("type(null)", "dynamic"),
        ('element(["a", "b", "c"], -1)', '"c"'),
        ('length("👨‍👩‍👧")', "1"),
    ],
)
def test_type_rules(text: str, expected: str) -> None:
    assert shown(text) == expected


def test_a_conditional_with_no_common_type_keeps_the_chosen_value() -> None:
    """Terraform refuses such a conditional; trainform keeps the chosen result (known
    difference), so configurations that relied on it keep working."""
    assert ev('true ? { a = { b = 1 } } : "x"') == {"a": {"b": 1}}


def test_coalesce_of_types_that_do_not_unify_is_an_error() -> None:
    with pytest.raises(ConfigError, match="all arguments must have the same type"):
        ev('coalesce({}, "hello")')


def test_the_other_branch_failing_does_not_fail_the_conditional() -> None:
    assert ev('true ? "x" : tonumber("no")') == "x"


# --- non-deterministic functions --------------------------------------------------------------


def test_timestamp_and_uuid_are_unknown_at_plan_time_and_decided_at_apply() -> None:
    assert ev("timestamp()") is UNKNOWN
    assert ev("uuid()") is UNKNOWN
    assert render_value(ev('"${uuid()}-x"')) == "(known after apply)"
    stamp = ev("timestamp()", apply_time=True)
    assert isinstance(stamp, str) and stamp.endswith("Z") and len(stamp) == 20
    first, second = ev("uuid()", apply_time=True), ev("uuid()", apply_time=True)
    assert len(first) == 36 and first != second


def test_formatdate_and_timeadd() -> None:
    assert ev('formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZ", "2018-01-02T23:12:01Z")') == (
        "Tuesday, 02-Jan-18 23:12:01 UTC"
    )
    assert ev('formatdate("HH:mmaa", "2018-01-02T23:12:01Z")') == "11:12pm"
    assert ev("formatdate(\"H 'o''clock'\", \"2018-01-02T23:12:01-08:00\")") == "11 o'clock"
    assert ev('timeadd("2017-11-22T00:00:00Z", "1h30m")') == "2017-11-22T01:30:00Z"
    with pytest.raises(ConfigError, match=r"timeadd.*invalid duration"):
        ev('timeadd("2017-11-22T00:00:00Z", "10 minutes")')
    with pytest.raises(ConfigError, match=r"formatdate.*not an RFC 3339 timestamp"):
        ev('formatdate("YYYY", "yesterday")')


# --- files ------------------------------------------------------------------------------------


def test_file_functions_hash_and_encode_the_bytes(tmp_path: Path) -> None:
    data = b"Hello World"
    (tmp_path / "hello.txt").write_bytes(data)
    assert ev('filebase64("hello.txt")', tmp_path) == base64.b64encode(data).decode()
    assert ev('filemd5("hello.txt")', tmp_path) == hashlib.md5(data).hexdigest()
    assert ev('filesha1("hello.txt")', tmp_path) == hashlib.sha1(data).hexdigest()
    assert ev('filesha512("hello.txt")', tmp_path) == hashlib.sha512(data).hexdigest()
    digest = hashlib.sha256(data).digest()
    assert ev('filebase64sha256("hello.txt")', tmp_path) == base64.b64encode(digest).decode()
    digest = hashlib.sha512(data).digest()
    assert ev('filebase64sha512("hello.txt")', tmp_path) == base64.b64encode(digest).decode()


def test_fileset_matches_globs_relative_to_the_folder(tmp_path: Path) -> None:
    for name in ("files/hello.txt", "files/world.txt", "files/sub/deep.txt", "files/x.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert ev('fileset("files", "*.txt")', tmp_path) == ["hello.txt", "world.txt"]
    assert ev('fileset("files", "**/*.txt")', tmp_path) == [
        "hello.txt",
        "sub/deep.txt",
        "world.txt",
    ]
    assert ev('fileset(".", "files/{hello,x}.*")', tmp_path) == ["files/hello.txt", "files/x.md"]
    assert isinstance(ev('fileset("files", "*")', tmp_path), TfSet)


def test_base64gzip_decompresses_to_the_text() -> None:
    import gzip

    encoded = ev('base64gzip("hello")')
    assert gzip.decompress(base64.b64decode(encoded)) == b"hello"


# --- limits and errors ------------------------------------------------------------------------


def test_setproduct_refuses_a_product_past_the_collection_limit_before_building_it() -> None:
    with pytest.raises(ConfigError, match="collection size limit"):
        ev("setproduct(range(1000), range(1000))")


def test_removed_functions_say_what_to_write_instead() -> None:
    with pytest.raises(ConfigError, match=r"list\(\) function was removed"):
        ev('list("a")')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sum([])", "sum: cannot sum an empty list"),
        ('cidrsubnet("10.0.0.0/30", 4, 0)', "cidrsubnet: insufficient address space"),
        ('cidrhost("10.0.0.0/30", 9)', "cidrhost: prefix of 30 bits cannot accommodate host 9"),
        ('cidrnetmask("fd00::/8")', "cidrnetmask: only IPv4 networks have a netmask"),
        ('cidrnetmask("banana")', 'cidrnetmask: invalid CIDR address "banana"'),
        ("chunklist([1], -1)", "chunklist: size must not be negative"),
        ('matchkeys(["a"], ["x", "y"], ["x"])', "matchkeys: values has 1 elements but keys has 2"),
        ('csvdecode("a,b\\n1\\n")', "csvdecode: line 2: 1 fields but the header has 2"),
        ('textencodebase64("x", "klingon")', 'textencodebase64: unsupported encoding "klingon"'),
        ('uuidv5("nope", "x")', "uuidv5: namespace must be"),
        ('formatlist("%s", ["a"], ["b", "c"])', "formatlist: all list arguments must have"),
        ('alltrue(["maybe"])', "alltrue: element 0 must be a bool"),
    ],
)
def test_bad_calls_name_the_function_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ev(text)
    assert message in str(caught.value)


def test_every_new_function_is_registered_with_the_same_contract() -> None:
    ctx = FunctionContext(Path("."))
    with pytest.raises(FunctionError, match="trim: expected 2 arguments, got 1"):
        FUNCTIONS["trim"](ctx, "x")


# --- console rendering ------------------------------------------------------------------------


def test_render_value_writes_values_as_terraform_console() -> None:
    value = {"a": 1, "c-d": {"x": [1, {"y": "a\nb"}]}, "s": 'q"\t\x01é'}
    assert render_value(value) == (
        "{\n"
        '  "a" = 1\n'
        '  "c-d" = {\n'
        '    "x" = [\n'
        "      1,\n"
        "      {\n"
        '        "y" = <<-EOT\n'
        "        a\n"
        "        b\n"
        "        EOT\n"
        "      },\n"
        "    ]\n"
        "  }\n"
        '  "s" = "q\\"\\t\\x01é"\n'
        "}"
    )
    assert render_value("a\nb\n") == "<<EOT\na\nb\n\nEOT"
    assert render_value(TfList()) == "tolist([])"
    assert render_value(None) == "null"
    assert render_value(UNKNOWN) == "(known after apply)"
    assert render_value("x", sensitive=True) == "(sensitive value)"
    assert render_value(1.5) == "1.5" and render_value(1e21) == "1000000000000000000000"


def test_yamlencode_quotes_and_folds_as_terraform() -> None:
    value = {"a": "yes", "h": "x\ny", "t": "x\ny\n", "k": [], "l": {}, "n": [{"x": 1, "y": [1]}]}
    assert ev("yamlencode(v)", v=value) == (
        '"a": "yes"\n'
        '"h": |-\n'
        "  x\n"
        "  y\n"
        '"k": []\n'
        '"l": {}\n'
        '"n":\n'
        '- "x": 1\n'
        '  "y":\n'
        "  - 1\n"
        '"t": |\n'
        "  x\n"
        "  y\n"
    )
    assert ev('yamlencode("  lead\\nx")') == "|2-\n    lead\n  x\n"
    assert ev('yamlencode("t\\tx\\ny")') == '"t\\tx\\ny"\n'
