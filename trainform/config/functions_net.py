"""Terraform's IP network functions: ``cidrhost``, ``cidrnetmask``, ``cidrsubnet``,
``cidrsubnets`` (IPv4 and IPv6, Python's ipaddress)."""

from __future__ import annotations

import ipaddress
from typing import Any

from trainform.config.functions import _fn, _quote, _want_int, _want_str
from trainform.config.types import typed
from trainform.config.values import FunctionContext, FunctionError, TfList

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(prefix: Any) -> _Network:
    text = _want_str(prefix, "prefix")
    try:
        # strict=False: like Go's net.ParseCIDR, host bits in the address are dropped.
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FunctionError(f"invalid CIDR address {_quote(text)}") from None


@_fn(
    "cidrhost",
    "cidrhost(prefix, hostnum): The address of host number hostnum in the network "
    "(negative counts from the end).",
)
def _cidrhost(ctx: FunctionContext, prefix: Any, hostnum: Any) -> str:
    net = _network(prefix)
    number = _want_int(hostnum, "hostnum")
    size = net.num_addresses
    if not -size <= number < size:
        raise FunctionError(f"prefix of {net.prefixlen} bits cannot accommodate host {number}")
    base = int(net.network_address) + (number if number >= 0 else size + number)
    return str(type(net.network_address)(base))


@_fn("cidrnetmask", "cidrnetmask(prefix): The IPv4 netmask of the network (255.255.0.0).")
def _cidrnetmask(ctx: FunctionContext, prefix: Any) -> str:
    net = _network(prefix)
    if net.version != 4:
        raise FunctionError("only IPv4 networks have a netmask")
    return str(net.netmask)


def _subnet(net: _Network, newbits: int, netnum: int) -> _Network:
    if newbits < 0:
        raise FunctionError(f"newbits must not be negative, got {newbits}")
    length = net.prefixlen + newbits
    if length > net.max_prefixlen:
        raise FunctionError(
            f"insufficient address space to extend prefix of {net.prefixlen} by {newbits}"
        )
    if not 0 <= netnum < 2**newbits:
        raise FunctionError(
            f"prefix extension of {newbits} does not accommodate a subnet numbered {netnum}"
        )
    base = int(net.network_address) + (netnum << (net.max_prefixlen - length))
    return type(net)((base, length))


@_fn(
    "cidrsubnet",
    "cidrsubnet(prefix, newbits, netnum): Subnet number netnum of the network, its prefix "
    "extended by newbits.",
)
def _cidrsubnet(ctx: FunctionContext, prefix: Any, newbits: Any, netnum: Any) -> str:
    net = _network(prefix)
    return str(_subnet(net, _want_int(newbits, "newbits"), _want_int(netnum, "netnum")))


@_fn(
    "cidrsubnets",
    "cidrsubnets(prefix, newbits...): Consecutive subnets of the network, one per newbits.",
)
def _cidrsubnets(ctx: FunctionContext, prefix: Any, *newbits: Any) -> list[str]:
    net = _network(prefix)
    out: list[str] = []
    start = int(net.network_address)
    end = start + net.num_addresses
    for i, bits in enumerate(newbits, start=1):
        extra = _want_int(bits, f"newbits {i}")
        if extra < 1:
            raise FunctionError(f"newbits {i} must be at least 1, got {extra}")
        length = net.prefixlen + extra
        if length > net.max_prefixlen:
            raise FunctionError(
                f"not enough remaining address space for a subnet with a prefix of {length} bits"
            )
        step = 1 << (net.max_prefixlen - length)
        start = -(-start // step) * step  # aligned to the subnet's size
        if start + step > end:
            raise FunctionError(
                f"not enough remaining address space for a subnet with a prefix of {length} bits"
            )
        out.append(str(type(net)((start, length))))
        start += step
    return typed(TfList(out), "string")
