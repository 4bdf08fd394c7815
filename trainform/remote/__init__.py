"""Reaching other machines: SSH (paramiko) and Docker engines (the docker SDK).

paramiko imports `invoke` (~0.3 s) only to run `Match exec` lines of an ssh_config, which
trainform never evaluates itself; it is made a lazy module here, before any of this package's
modules import paramiko, so that it is loaded only if something really uses it.
"""

from __future__ import annotations

import importlib.util
import sys


def _defer(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)


_defer("invoke")
