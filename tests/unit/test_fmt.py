from __future__ import annotations

import re

import hcl2
import pytest

from trainform.config import fmt
from trainform.config.fmt import FormatError, format_hcl

MESSY = """\


# Training configuration for the demo project.
variable "region" {
    default="us-east-1"   # trailing comment
}

resource   "run"    "train"{
\timage = "pytorch:2.3"
  learning_rate=0.001
      epochs   =    10 // epochs
  tags = {
   team = "ml"
        "cost-center"  = "42"
  }
  args = [
"--foo",
    "--bar",   # bar
  ]
  note = "a { not a block # not a comment"
  path = "${lookup(var.m, "k")}/x"
  script = <<-EOT
      echo "hi {"
        # not a comment either
   EOT
  /* block
       comment kept */
  lifecycle {
      prevent_destroy = true
  }



  call = merge(
    var.a,
        {
      z = 1
    },
  )
}   \n\n\n"""

EXPECTED = """\
# Training configuration for the demo project.
variable "region" {
  default = "us-east-1" # trailing comment
}

resource "run" "train" {
  image         = "pytorch:2.3"
  learning_rate = 0.001
  epochs        = 10 // epochs
  tags = {
    team          = "ml"
    "cost-center" = "42"
  }
  args = [
    "--foo",
    "--bar", # bar
  ]
  note   = "a { not a block # not a comment"
  path   = "${lookup(var.m, "k")}/x"
  script = <<-EOT
      echo "hi {"
        # not a comment either
   EOT
  /* block
       comment kept */
  lifecycle {
    prevent_destroy = true
  }

  call = merge(
    var.a,
    {
      z = 1
    },
  )
}
"""

# Inputs exercising different constructs; each must keep its meaning and comments.
SAMPLES = [
    MESSY,
    "a = 1\r\nbb = 2\r\n",
    "\tx {\n\t\ty=1\n\t}\n",
    'r "x" { # header\n  a = 1 # one\n\n  b = { c = 1 }\n}\n',
    'x = {for k, v in m :\n k => v if v != "" }\n',
    "a = [<<EOT\nx {\nEOT\n, 1]\n",
    "x = {\n  a = 1, b = 2\n  ccc = 3\n}\n",
    "a = !true\nb = -1\nc = x == y\nd = x >= 2\ne = [for s in l : upper(s)]\n",
    "/* c1 */ a = 1 /* c2 */\n",
    'a = "$${x} %%{y}"\nk = "a\\"{b#"\n',
    "x = 1 ? {\n a = 1\n} : {\n  a = 2\n}\n",
    "n = [{\n  a = 1\n}, {\n  bb = 2\n}]\n",
    'd "x" {\n  t = "${ {b = "}"}.b }"\n  u = "${f(\n    1)}"\n}\n',
    "# only a comment",
    "",
]


def comments(text: str) -> list[str]:
    return fmt._comments(fmt._Lexer(text).tokenize())


def test_messy_config_is_formatted_canonically() -> None:
    assert format_hcl(MESSY) == EXPECTED


def test_canonical_input_is_unchanged() -> None:
    assert format_hcl(EXPECTED) == EXPECTED


@pytest.mark.parametrize("text", SAMPLES)
def test_idempotent(text: str) -> None:
    once = format_hcl(text)
    assert format_hcl(once) == once


@pytest.mark.parametrize("text", SAMPLES)
def test_meaning_and_comments_preserved(text: str) -> None:
    out = format_hcl(text)
    assert hcl2.loads(out) == hcl2.loads(text)
    assert comments(out) == comments(text)


@pytest.mark.parametrize("text", SAMPLES)
def test_layout_rules(text: str) -> None:
    out = format_hcl(text)
    lines = out.split("\n")
    assert out == "" or (out.endswith("\n") and not out.endswith("\n\n"))
    assert "\t" not in out or "<<" in text  # tabs survive only inside heredocs
    assert all(line == line.rstrip() for line in lines)
    assert "\n\n\n" not in out
    assert not out.startswith("\n")


def test_all_comment_styles_survive() -> None:
    out = format_hcl(MESSY)
    for comment in (
        "# Training configuration for the demo project.",
        "# trailing comment",
        "// epochs",
        "# bar",
        "/* block\n       comment kept */",
    ):
        assert comment in out


def test_equals_alignment_and_runs() -> None:
    text = (
        "b {\n  a = 1\n  long_name = 2\n\n  c = 3\n  # note\n  dd = 4\n"
        "  e = {\n    f=1\n  }\n  gg = 5\n}\n"
    )
    assert format_hcl(text) == (
        "b {\n"
        "  a         = 1\n"
        "  long_name = 2\n"
        "\n"
        "  c = 3\n"
        "  # note\n"
        "  dd = 4\n"
        "  e = {\n"
        "    f = 1\n"
        "  }\n"
        "  gg = 5\n"
        "}\n"
    )


def test_trailing_comments_align_in_runs() -> None:
    text = "a = 1 # x\nlong = 2   # y\n"
    assert format_hcl(text) == "a    = 1 # x\nlong = 2 # y\n"
    text = "a = 1 # x\nlong_name_here = 22 # y\n"
    assert format_hcl(text) == "a              = 1  # x\nlong_name_here = 22 # y\n"


def test_block_header_spacing() -> None:
    assert format_hcl('resource  "a"   "b"{\n}\n') == 'resource "a" "b" {\n}\n'
    assert format_hcl("lifecycle{}\n") == "lifecycle {}\n"


def test_adjacent_block_comments_can_be_reindented() -> None:
    # python-hcl2 merges these two comments, whitespace included, into one value; that
    # must not be mistaken for a change of meaning.
    text = "b {\n    /* x */\n      /* y */\n  c = 1\n}\n"
    assert format_hcl(text) == "b {\n  /* x */\n  /* y */\n  c = 1\n}\n"


def test_string_with_brace_and_hash_is_not_structure() -> None:
    text = 'x {\n  a = "{ # [ ("\n  b = "}"\n}\ny = 1\n'
    assert format_hcl(text) == text


def test_interpolation_with_nested_quotes() -> None:
    text = 'x = "${lookup(var.m, "k")}-${join(",", ["a", "}"])}"\ny   =   2\n'
    assert format_hcl(text) == 'x = "${lookup(var.m, "k")}-${join(",", ["a", "}"])}"\ny = 2\n'


def test_heredoc_lines_untouched() -> None:
    body = "    keep   \n\t{ tab\n  # no comment\n"
    text = f"x {{\n  s = <<EOT\n{body}EOT\n    t = 1\n}}\n"
    out = format_hcl(text)
    assert body in out
    assert out.endswith("EOT\n  t = 1\n}\n")


def test_comparison_operators_are_not_assignments() -> None:
    text = 'c = a == "x" ? 1 : 2\nd = a != b\ne = a <= b\nf = {for k, v in m : k => v}\n'
    assert format_hcl(text) == text


def test_blank_lines_collapsed_and_stripped() -> None:
    assert format_hcl("\n\n\na = 1\n\n\n\nb = 2\n\n\n") == "a = 1\n\nb = 2\n"
    assert format_hcl("   \n\t\n") == ""
    assert format_hcl("a = 1") == "a = 1\n"


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        ("a = 1\nb = {\n  c = = 1\n}\n", 3, 7),
        ("a = 1 1\n", 1, 7),
        ("b {\n  c = 1\n}\n}\n", 4, 1),
    ],
)
def test_syntax_error_has_location(text: str, line: int, col: int) -> None:
    with pytest.raises(FormatError) as info:
        format_hcl(text, "model.train.hcl")
    message = str(info.value)
    assert message.startswith(f"model.train.hcl:{line}:{col}: syntax error: unexpected ")
    assert "\n" not in message
    assert len(message) < 120


def test_unterminated_input_reports_error() -> None:
    with pytest.raises(FormatError, match=r"^f\.hcl:\d+:\d+: syntax error"):
        format_hcl("a = {\n", "f.hcl")


def test_refuses_output_that_changes_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "_format_tokens", lambda tokens: "a = 2\n")
    with pytest.raises(
        FormatError, match=re.escape("change meaning of x.hcl; file left unchanged")
    ):
        format_hcl("a = 1\n", "x.hcl")


def test_refuses_output_that_drops_a_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "_format_tokens", lambda tokens: "a = 1\n")
    with pytest.raises(FormatError, match=r"internal formatter error: .*comments"):
        format_hcl("a = 1 # keep me\n", "x.hcl")


def test_hcl2_comparison_is_a_separate_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "_format_tokens", lambda tokens: "a = 2\n")
    monkeypatch.setattr(fmt, "_significant", lambda tokens: [])
    with pytest.raises(FormatError, match=re.escape("change meaning of x.hcl")):
        format_hcl("a = 1\n", "x.hcl")


def test_strip_markers_are_formatted_not_refused() -> None:
    # python-hcl2 cannot read "${~ x ~}"; fmt must still format a file plan accepts
    text = 'locals {\n  a   = "x${~ var.y ~}z %{~ if true ~} q %{~ endif ~}"\n  b = 1\n}\n'
    assert format_hcl(text) == (
        'locals {\n  a = "x${~ var.y ~}z %{~ if true ~} q %{~ endif ~}"\n  b = 1\n}\n'
    )
