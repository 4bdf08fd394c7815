"""Parsing and matching resource addresses, with and without modules."""

from __future__ import annotations

import pytest

from trainform.config.address import (
    AddressError,
    ModuleStep,
    parse_address,
    parse_module_path,
    selects,
)


@pytest.mark.parametrize(
    "text",
    [
        "compute.gpu",
        "run.train[0]",
        'sweep.lr["a b"]',
        'module.team["a"].compute.box',
        'module.a.module.b[2].run.x["k.y"]',
    ],
)
def test_an_address_prints_as_written(text: str) -> None:
    assert str(parse_address(text)) == text


def test_block_and_config_block_drop_keys() -> None:
    a = parse_address('module.team["a"].compute.box[1]')
    assert a.module == (ModuleStep("team", "a"),)
    assert a.block == 'module.team["a"].compute.box'
    assert a.config_block == "module.team.compute.box"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must not be empty"),
        ("compute", "not an address"),
        ("module.x", "is a module, not a resource"),
        ("foo.bar", "starts with one of"),
        ("compute.x.", "ends with '.'"),
        ("compute.x[-1]", "must be >= 0"),
        ("compute.x y", "expected '.'"),
        ("compute.a.run.b", "cannot contain other resources"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        parse_address(text)


def test_a_module_path_holds_only_modules() -> None:
    assert parse_module_path('module.a["x"].module.b') == (
        ModuleStep("a", "x"),
        ModuleStep("b"),
    )
    with pytest.raises(AddressError):
        parse_module_path("module.a.compute.b")


@pytest.mark.parametrize(
    ("target", "address", "expected"),
    [
        ("compute.box", "compute.box", True),
        ("compute.box", "compute.box[1]", True),
        ("compute.box[0]", "compute.box[1]", False),
        ("module.team", 'module.team["a"].compute.box', True),
        ('module.team["b"]', 'module.team["a"].compute.box', False),
        ('module.team["a"]', 'module.team["a"].module.inner.run.x', True),
        ("module.team.compute.box", 'module.team["a"].compute.box', True),
        ("compute.box", 'module.team["a"].compute.box', False),
        ("not an address", "compute.box", False),
    ],
)
def test_targets_select_instances_blocks_and_modules(
    target: str, address: str, expected: bool
) -> None:
    assert selects(target, address) is expected
