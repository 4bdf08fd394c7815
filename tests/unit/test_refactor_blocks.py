"""moved / removed / import / check blocks: parsing, static diagnostics, and what moves do to
prior state (data-driven: statements and state in, state out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.config.address import parse_address, parse_target
from trainform.config.loader import load_module
from trainform.config.model import Moved, Removed
from trainform.errors import ConfigError, Pos
from trainform.planner.moves import apply_moves, apply_removals, destination
from trainform.providers.base import ResourceState

BOX = 'compute "new" {\n  type = "local"\n}\n'


def load(tmp_path: Path, text: str):
    (tmp_path / "main.train.hcl").write_text(text)
    return load_module(tmp_path)


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return [
        f"{d.pos.line if d.pos else '-'}: {d.message}".replace(f"{tmp_path}/", "")
        for d in exc.value.diagnostics
    ]


def state(*addresses: str) -> dict[str, ResourceState]:
    out = {}
    for a in addresses:
        addr = parse_address(a)
        out[a] = ResourceState(a, addr.kind, addr.name, addr.key, "local", {}, {"id": a})
    return out


def moves(*pairs: tuple[str, str]) -> tuple[Moved, ...]:
    return tuple(Moved(a, b, Pos("main.train.hcl", i + 1, 1)) for i, (a, b) in enumerate(pairs))


def test_blocks_are_parsed_with_addresses_printed_by_address_py(tmp_path: Path) -> None:
    module = load(
        tmp_path,
        BOX
        + 'run "r" {\n  compute = compute.new\n  script = "t.py"\n  experiment = "e"\n}\n'
        + "moved {\n  from = compute.old\n  to = compute.new\n}\n"
        + 'moved {\n  from = module.team["a"].compute.box[0]\n  to = compute.gone\n}\n'
        + "removed {\n  from = run.x\n  lifecycle {\n    destroy = false\n  }\n}\n"
        + "removed {\n  from = compute.y\n}\n"
        + 'import {\n  to = compute.new\n  id = "u@h:22"\n}\n'
        + 'check "cpus" {\n  assert {\n    condition = compute.new.facts.cpus > 1\n'
        + '    error_message = "few"\n  }\n}\n',
    )
    assert [(m.from_, m.to) for m in module.moved] == [
        ("compute.old", "compute.new"),
        ('module.team["a"].compute.box[0]', "compute.gone"),
    ]
    assert [(r.from_, r.destroy) for r in module.removed] == [("run.x", False), ("compute.y", True)]
    assert [i.to for i in module.imports] == ["compute.new"]
    assert [c.name for c in module.checks] == ["cpus"]


def test_pre_and_postconditions_are_read_from_lifecycle(tmp_path: Path) -> None:
    module = load(
        tmp_path,
        'compute "b" {\n  type = "local"\n  lifecycle {\n'
        + '    precondition {\n      condition = 1 < 2\n      error_message = "x"\n    }\n'
        + "    postcondition {\n      condition = self.facts.cpus >= 2\n"
        + '      error_message = "y"\n    }\n  }\n}\n',
    )
    lc = module.resources["compute.b"].lifecycle
    assert len(lc.preconditions) == 1 and len(lc.postconditions) == 1
    assert lc.postconditions[0].pos.line == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "moved {\n  from = compute.old\n  to = compute.new\n}\n"
            "moved {\n  from = compute.old\n  to = compute.other\n}\n",
            "8: Ambiguous move statements: a statement at main.train.hcl:4:1 declared that "
            "compute.old moved to compute.new, but this statement instead declares that it "
            "moved to compute.other",
        ),
        (
            "moved {\n  from = compute.a\n  to = compute.new\n}\n"
            "moved {\n  from = compute.b\n  to = compute.new\n}\n",
            "8: Ambiguous move statements: a statement at main.train.hcl:4:1 declared that "
            "compute.a moved to compute.new, but this statement instead declares that "
            "compute.b moved there",
        ),
        (
            "moved {\n  from = compute.a\n  to = compute.b\n}\n"
            "moved {\n  from = compute.b\n  to = compute.a\n}\n",
            "4: Cyclic dependency in move statements: main.train.hcl:4: compute.a -> "
            "compute.b; main.train.hcl:8: compute.b -> compute.a",
        ),
        (
            "moved {\n  from = compute.new\n  to = compute.newer\n}\n",
            "4: Moved object still declared: this statement declares that compute.new moved "
            "to compute.newer, but compute.new is still declared at",
        ),
        (
            "moved {\n  from = compute.a\n  to = run.a\n}\n",
            "4: moved: cannot move a compute (compute.a) to a run address (run.a)",
        ),
        (
            "moved {\n  from = module.a\n  to = compute.a\n}\n",
            "4: moved: cannot move module.a to compute.a: both must be modules, or both",
        ),
        (
            'moved {\n  from = "compute.${var.x}"\n  to = compute.a\n}\n',
            "5: from must be an address such as compute.box",
        ),
        (
            "removed {\n  from = compute.new\n  lifecycle {\n    destroy = false\n  }\n}\n",
            "4: Removed resource still exists: the removed block declares that compute.new "
            "was removed, but it is still declared in the configuration at main.train.hcl:1:1",
        ),
        (
            "removed {\n  from = compute.x[0]\n}\n",
            "5: removed: from = compute.x[0] names one instance",
        ),
        (
            "removed {\n  from = compute.x\n  lifecycle {\n    destroy = 3\n  }\n}\n",
            "7: destroy must be true or false",
        ),
        (
            'import {\n  to = compute.box\n  id = "x"\n}\n',
            "4: import: compute.box is not in the configuration",
        ),
        (
            "import {\n  to = compute.new\n}\n",
            "4: an import block requires attribute 'id'",
        ),
        (
            'check "c" {\n  assert {\n    condition = compute.nope.facts.gpus > 0\n'
            '    error_message = "x"\n  }\n}\n',
            "6: reference to undeclared 'compute.nope'",
        ),
        ('check "c" {\n}\n', '4: check "c" has no assert block'),
    ],
)
def test_bad_blocks_give_one_diagnostic_with_their_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    found = errors(tmp_path, BOX + text)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_a_chain_of_moves_is_allowed_and_resolves_to_its_end(tmp_path: Path) -> None:
    module = load(
        tmp_path,
        BOX
        + "moved {\n  from = compute.mid\n  to = compute.new\n}\n"
        + "moved {\n  from = compute.old\n  to = compute.mid\n}\n",
    )
    out = apply_moves(module.moved, state("compute.old"))
    assert list(out.prior) == ["compute.new"]
    assert out.moved == {"compute.new": "compute.old"}
    assert out.prior["compute.new"].name == "new"


@pytest.mark.parametrize(
    ("pairs", "before", "after"),
    [
        ((("compute.old", "compute.new"),), ["compute.old"], ["compute.new"]),
        (
            (("compute.pool", "compute.gpus"),),
            ["compute.pool[0]", "compute.pool[1]"],
            ["compute.gpus[0]", "compute.gpus[1]"],
        ),
        (
            (("compute.box[0]", 'compute.box["a"]'), ("compute.box[1]", 'compute.box["b"]')),
            ["compute.box[0]", "compute.box[1]"],
            ['compute.box["a"]', 'compute.box["b"]'],
        ),
        ((("compute.box", "compute.box[0]"),), ["compute.box"], ["compute.box[0]"]),
        (
            (("compute.box", 'module.team["a"].compute.box'),),
            ["compute.box"],
            ['module.team["a"].compute.box'],
        ),
        (
            (('module.team["a"].run.r', "run.r"),),
            ['module.team["a"].run.r'],
            ["run.r"],
        ),
        (
            (("module.a", "module.b"),),
            ["module.a.compute.x", 'module.a.run.y["k"]', "compute.z"],
            ["compute.z", "module.b.compute.x", 'module.b.run.y["k"]'],
        ),
        (
            (("module.a", "module.b"),),
            ['module.a["x"].compute.c', "module.a[0].run.r"],
            ['module.b["x"].compute.c', "module.b[0].run.r"],
        ),
        ((('module.a["x"]', "module.b"),), ['module.a["x"].compute.c'], ["module.b.compute.c"]),
        # statements whose source is gone (already applied) change nothing
        ((("compute.old", "compute.new"),), ["compute.new"], ["compute.new"]),
    ],
)
def test_moves_rename_prior_state(pairs, before, after) -> None:
    out = apply_moves(moves(*pairs), state(*before))
    assert sorted(out.prior) == sorted(after)
    for address, rs in out.prior.items():
        assert rs.address == address and str(parse_address(address).with_key(rs.key)) == address


def test_moving_onto_an_address_state_holds_is_an_error_naming_the_statement() -> None:
    with pytest.raises(ConfigError) as exc:
        apply_moves(moves(("compute.a", "compute.b")), state("compute.a", "compute.b"))
    d = exc.value.diagnostics[0]
    assert d.pos is not None and d.pos.line == 1
    assert "compute.a could not move to compute.b: both are in the state" in d.message


def test_dependencies_follow_renamed_blocks() -> None:
    prior = state("compute.old", "run.r")
    prior["run.r"] = ResourceState("run.r", "run", "r", None, "run", {}, {}, ("compute.old",))
    out = apply_moves(moves(("compute.old", "compute.new")), prior)
    assert out.prior["run.r"].dependencies == ("compute.new",)
    assert out.renamed_blocks == {"compute.new": "compute.old"}


def test_removed_with_destroy_false_takes_every_instance_out_of_prior_state() -> None:
    out = apply_moves((), state("run.x[0]", "run.x[1]", "run.y"))
    out = apply_removals(
        (Removed("run.x", False, Pos("f", 1, 1)), Removed("run.y", True, Pos("f", 2, 1))), out
    )
    assert sorted(out.forgotten) == ["run.x[0]", "run.x[1]"]
    assert list(out.prior) == ["run.y"]  # destroy = true: planned as unconfigured, destroyed


def test_destination_keeps_keys_only_when_both_sides_have_none() -> None:
    src, dst = parse_target("compute.a"), parse_target("compute.b[3]")
    assert destination(src, dst, parse_address("compute.a")) == parse_address("compute.b[3]")
    assert destination(src, dst, parse_address("compute.a[1]")) is None
