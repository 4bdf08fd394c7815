"""Write function_types.json: for a call of every function trainform offers, what Terraform's
console prints for ``type(<call>)`` and for the call itself.

Run it with Terraform on PATH (the table was made with Terraform 1.11):

    .venv/bin/python tests/terraform_docs/function_types.py

``tests/unit/test_function_types.py`` evaluates the same calls with trainform and compares
both texts. Each call runs in a fresh ``terraform console`` in a folder holding :data:`FILES`
(the file functions read them), one expression per invocation: through a pipe the console
prints the result of the last line only.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("function_types.json")

FILES: dict[str, str] = {
    "hello.txt": "Hello World",
    "files/a.txt": "a",
    "files/b.txt": "b",
    "files/sub/c.txt": "c",
    "data.csv": "name,size\nx,1\ny,2\n",
    "t.tftpl": "%{ for n in names ~}\n${n}=${port}\n%{ endfor ~}\n",
    # templatestring() takes a reference: the one variable the calls may use
    "variables.tf": 'variable "template" {\n  default = "Hi $${name}%%{ if name == \\"w\\" }!%%{ endif }"\n}\n',
}
"""Files the calls read, made in the folder the console (and the test's evaluation) runs in."""

TYPE_ONLY = "type only"
"""A call whose result is not the same from run to run or machine to machine: only its type
is compared."""

CALLS: list[str | tuple[str, str]] = [
    # numbers
    "abs(-1.5)",
    "ceil(1.2)",
    "floor(-1.2)",
    "log(16, 2)",
    "max(1, 2.5, -3)",
    "min(1, 2.5, -3)",
    'parseint("ff", 16)',
    "pow(2, 10)",
    "pow(2, 0.5)",
    "signum(-3)",
    "sum([1, 2.5])",
    "sum(tolist([1, 2]))",
    "sum(toset([1, 2]))",
    # strings
    'chomp("a\\n")',
    'endswith("abc", "c")',
    'format("%s-%d", "a", 1)',
    'formatlist("%s-%d", ["a", "b"], 1)',
    'formatlist("%s", toset(["b", "a"]))',
    'formatlist("x")',
    'indent(2, "a\\nb")',
    'join(",", ["a", 1, true])',
    'join(",", toset(["b", "a"]), tolist(["c"]))',
    'lower("AB")',
    'regex("a(b)(c)", "abc")',
    'regex("(?P<x>a)(?P<y>b)", "ab")',
    'regex("b+", "abbc")',
    'regexall("b", "abcb")',
    'regexall("(a)(b)", "abab")',
    'regexall("(?P<x>a)", "aa")',
    'regexall("z", "abc")',
    'replace("abc", "b", "x")',
    'split(",", "a,b")',
    'split(",", "")',
    'startswith("abc", "a")',
    'strcontains("abc", "b")',
    'strrev("abc")',
    'substr("hello", 1, 3)',
    'title("hello world")',
    'trim("?!a?!", "!?")',
    'trimprefix("ab", "a")',
    'trimsuffix("ab", "b")',
    'trimspace("  a  ")',
    'upper("ab")',
    # collections
    'alltrue([true, "true"])',
    "alltrue(toset([true]))",
    "anytrue([false])",
    'chunklist(["a", "b", "c"], 2)',
    'chunklist(["a", 1], 1)',
    'chunklist(tolist(["a", "b"]), 0)',
    "chunklist(toset([1, 2, 3]), 2)",
    "chunklist([], 2)",
    'coalesce(null, "a")',
    'coalesce(1, "a")',
    "coalesce(null, 2)",
    'coalescelist([], ["a", 1])',
    'coalescelist(tolist([]), tolist(["a"]))',
    'coalescelist(["a"], tolist(["b"]))',
    'compact(["a", "", null])',
    'compact(toset(["a", ""]))',
    'concat(["a"], ["b"])',
    'concat(["a"], [1])',
    'concat(tolist(["a"]), tolist(["b"]))',
    'concat(tolist(["a"]), ["b"])',
    'concat(tolist(["a"]), [1])',
    'concat(toset(["a"]), tolist(["b"]))',
    'concat(toset(["b", "a"]), toset(["c"]))',
    "concat([])",
    'contains(["a", "b"], "a")',
    'contains(toset(["a"]), "a")',
    'distinct(["a", "b", "a"])',
    'distinct(["a", 1, "1"])',
    'distinct(tolist(["a", "a"]))',
    "distinct([])",
    'element(["a", "b"], 3)',
    'element(["a", 1], 1)',
    'element(tolist(["a", "b"]), 0)',
    'flatten([["a"], ["b", ["c"]]])',
    'flatten([["a"], [1]])',
    'flatten(tolist([tolist(["a"]), tolist(["b"])]))',
    'flatten(tolist([toset(["a"])]))',
    "flatten([])",
    'index(["a", "b"], "b")',
    'index(tolist(["a", "b"]), "b")',
    'keys({a = 1, b = "x"})',
    "keys(tomap({b = 1, a = 2}))",
    "keys({})",
    'length(["a", 1])',
    "length({a = 1})",
    'length("abc")',
    'length(toset(["a"]))',
    'lookup({a = 1, b = "x"}, "a")',
    'lookup({a = 1, b = "x"}, "c", "d")',
    'lookup(tomap({a = 1}), "a")',
    'lookup(tomap({a = 1}), "b", 2)',
    'lookup(tomap({a = "x"}), "b", 2)',
    'matchkeys(["a", "b"], ["x", "y"], ["y"])',
    'matchkeys(tolist(["a", "b"]), tolist(["x", "y"]), toset(["x"]))',
    'merge({a = 1}, {b = "x"})',
    "merge(tomap({a = 1}), tomap({b = 2}))",
    'merge(tomap({a = 1}), {b = "x"})',
    'merge(tomap({a = "x"}), tomap({b = 2}))',
    "merge({a = 1}, null)",
    "merge()",
    'one(["a"])',
    "one([])",
    'one(tolist(["a"]))',
    'one(toset(["a"]))',
    "one(tolist([]))",
    "range(3)",
    "range(1, 2, 0.5)",
    "range(0)",
    'reverse(["a", 1])',
    'reverse(tolist(["a", "b"]))',
    'reverse(toset(["a", "b"]))',
    "reverse([])",
    'setintersection(toset(["a", "b"]), toset(["b"]))',
    'setintersection(["a", "b"], ["b", 1])',
    'setproduct(["a", "b"], [1, 2])',
    'setproduct(toset(["a"]), toset([1]))',
    'setproduct(tolist(["a"]), tolist([1]))',
    'setproduct(toset(["a"]), tolist([1]))',
    'setproduct(["a"], [])',
    'setsubtract(toset(["a", "b"]), ["a"])',
    'setsubtract(["a", 1], ["a"])',
    'setunion(["a"], ["b", 1])',
    'setunion(toset(["b"]), toset(["a"]))',
    'slice(["a", 1, true], 1, 3)',
    'slice(tolist(["a", "b", "c"]), 0, 2)',
    "slice([], 0, 0)",
    'sort(["b", "a", 1])',
    'sort(toset(["b", "a"]))',
    "sort([])",
    'tolist(["a", 1])',
    "tolist(toset([2, 1]))",
    "tolist([])",
    'tomap({a = 1, b = "x"})',
    "tomap({})",
    'toset(["b", "a", "b"])',
    'toset(["a", 1])',
    "toset(tolist([1]))",
    "toset([])",
    'transpose({a = ["x", "y"], b = ["x"]})',
    'transpose(tomap({a = tolist(["x"])}))',
    "transpose({})",
    'values({a = 1, b = "x"})',
    "values(tomap({b = 1, a = 2}))",
    "values({})",
    'zipmap(["a", "b"], [1, "x"])',
    'zipmap(["a", "b"], tolist([1, 2]))',
    'zipmap(tolist(["a"]), ["x"])',
    'zipmap(toset(["b", "a"]), [1, 2])',
    "zipmap([], [])",
    # conversions and types
    'tobool("true")',
    'tonumber("1.5")',
    "tostring(1.5)",
    "tostring(null)",
    "type(1)",
    'type(tolist(["a"]))',
    'try(split(",", "a"), [])',
    'try(tonumber("x"), 1)',
    'can(tonumber("x"))',
    'sensitive(["a"])',
    'nonsensitive(sensitive(split(",", "a")))',
    'ephemeralasnull(toset(["a"]))',
    # encodings
    'base64decode("YQ==")',
    'base64encode("a")',
    'base64gzip("a")',
    'base64sha256("a")',
    'base64sha512("a")',
    'csvdecode("a,b\\n1,2\\n3,4\\n")',
    'csvdecode("a,b\\n")',
    'jsondecode("{\\"a\\": [1, \\"x\\"], \\"b\\": null}")',
    'jsondecode("[1, 2]")',
    'jsonencode(tomap({a = toset(["x"])}))',
    'md5("a")',
    'sha1("a")',
    'sha256("a")',
    'sha512("a")',
    'textdecodebase64("YQ==", "UTF-8")',
    'textencodebase64("a", "UTF-16LE")',
    'urlencode("a b")',
    'uuidv5("dns", "example.com")',
    'yamldecode("a: [1, x]\\nb: {c: true}")',
    'yamldecode("- a\\n- 1")',
    'yamlencode(tomap({a = ["x"]}))',
    # files and paths
    ('abspath("files")', TYPE_ONLY),
    'basename("a/b.txt")',
    'dirname("a/b.txt")',
    ('pathexpand("~/x")', TYPE_ONLY),
    'file("hello.txt")',
    'filebase64("hello.txt")',
    'filebase64sha256("hello.txt")',
    'filebase64sha512("hello.txt")',
    'fileexists("hello.txt")',
    'filemd5("hello.txt")',
    'filesha1("hello.txt")',
    'filesha256("hello.txt")',
    'filesha512("hello.txt")',
    'fileset("files", "**/*.txt")',
    'fileset("files", "none*")',
    'csvdecode(file("data.csv"))',
    'templatefile("t.tftpl", {names = ["a", "b"], port = 80})',
    'templatestring(var.template, {name = "w"})',
    'templatestring("x", {})',
    # networks
    'cidrhost("10.0.0.0/8", 2)',
    'cidrnetmask("10.0.0.0/8")',
    'cidrsubnet("10.0.0.0/8", 8, 1)',
    'cidrsubnets("10.0.0.0/8", 8, 8)',
    # time
    'formatdate("YYYY-MM-DD", "2024-01-02T03:04:05Z")',
    'timeadd("2024-01-02T03:04:05Z", "1h")',
    'timecmp("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z")',
    ("timestamp()", TYPE_ONLY),
    ("plantimestamp()", TYPE_ONLY),
    ("uuid()", TYPE_ONLY),
    # empty results, whose type the elements cannot tell
    "chunklist(tolist([]), 1)",
    'chunklist(tolist(["a"]), 1)',
    "compact([])",
    'concat(tolist([]), tolist(["a"]))',
    'concat(tolist(["a"]), tolist([1]))',
    'distinct(toset(["b", "a"]))',
    'flatten([tolist([]), ["a"]])',
    'formatlist("%s", [])',
    "keys(tomap({}))",
    "matchkeys([], [], [])",
    "merge(tomap({}), tomap({a = 1}))",
    'merge(tomap({a = 1}), tomap({b = "x"}), null)',
    'regexall("(a)(b)", "x")',
    'regexall("(?P<x>a)", "b")',
    "reverse(tolist([]))",
    'setintersection(["a"], ["b"])',
    "setunion(toset([]), toset([]))",
    'slice(toset(["a", "b"]), 0, 1)',
    "sort(tolist([]))",
    "tolist([[], []])",
    "tomap({a = {}})",
    "tomap({a = tolist([])})",
    "toset(tolist([]))",
    "transpose(tomap({}))",
    "values(tomap({}))",
    "values({a = tomap({x = 1})})",
    "zipmap([], tolist([]))",
    'coalescelist(toset(["a"]))',
    'index(toset(["a"]), "a")',
    'lookup({a = 1}, "b", "x")',
    'element(toset(["a"]), 0)',
    'flatten(toset(["a"]))',
    "merge(tomap({}), tomap({}))",
    "merge(tomap({a = 1}), null)",
    "tolist([tolist([]), tolist([])])",
    # removed functions (errors in Terraform)
    'list("a")',
    'map("a", 1)',
]
"""Calls covering every function, with the argument types (a set or a list or a tuple, a
map or an object) on which Terraform's result type depends."""


def console(expression: str) -> dict[str, Any]:
    """What ``terraform console`` prints for expression: {"text": ...} or {"error": ...}.
    Each call has a folder of its own: a console locks the (empty) state of its folder."""
    env = dict(os.environ, TF_CLI_CONFIG_FILE="/dev/null", CHECKPOINT_DISABLE="1")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for path, text in FILES.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
        done = subprocess.run(
            ["terraform", "console", "-no-color"],
            input=expression.replace("\n", " ") + "\n",
            capture_output=True,
            text=True,
            cwd=folder,
            env=env,
            timeout=60,
            check=False,
        )
    if done.returncode != 0:
        return {"error": " ".join(done.stderr.split())}
    return {"text": done.stdout.removesuffix("\n")}


def main() -> None:
    version = subprocess.run(
        ["terraform", "version", "-json"], capture_output=True, text=True, check=True
    )
    entries = [(c, "") if isinstance(c, str) else c for c in CALLS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        types = list(pool.map(lambda e: console(f"type({e[0]})"), entries))
        values = list(pool.map(lambda e: console(e[0]), entries))
    rows = []
    for (expression, note), typ, value in zip(entries, types, values, strict=True):
        row: dict[str, Any] = {"expression": expression, "type": typ}
        if note == TYPE_ONLY:
            row["type_only"] = True
        else:
            row["value"] = value
        rows.append(row)
    table = {
        "terraform_version": json.loads(version.stdout)["terraform_version"],
        "files": FILES,
        "calls": rows,
    }
    OUTPUT.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} calls to {OUTPUT}")


if __name__ == "__main__":
    main()
