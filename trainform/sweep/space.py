"""Search spaces: parameters and their distributions, exactly as Azure ML defines them.

A distribution is named and takes named arguments:

=================  ==================  ==============================================
distribution       arguments           a draw
=================  ==================  ==============================================
``choice``         ``values``          one of the values, as it is
``randint``        ``upper``           an integer in [0, upper)
``uniform``        ``min, max``        uniform(min, max)
``quniform``       ``min, max, q``     round(uniform(min, max) / q) * q
``loguniform``     ``min, max``        exp(uniform(min, max))
``qloguniform``    ``min, max, q``     round(exp(uniform(min, max)) / q) * q
``normal``         ``mu, sigma``       normal(mu, sigma)
``qnormal``        ``mu, sigma, q``    round(normal(mu, sigma) / q) * q
``lognormal``      ``mu, sigma``       exp(normal(mu, sigma))
``qlognormal``     ``mu, sigma, q``    round(exp(normal(mu, sigma)) / q) * q
=================  ==================  ==============================================

Quantised draws are ``int`` when ``q`` is an ``int`` and floats otherwise (rounded to the
decimals of ``q``, so ``q = 0.1`` gives ``0.3``, not ``0.30000000000000004``). Rounding is
Python's (half to even), as numpy's is.

Mistakes raise :class:`SweepSpecError`, whose message names the parameter; the configuration
loader turns it into a diagnostic with the file and line.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from trainform.config.schema import did_you_mean
from trainform.errors import TrainformError


class SweepSpecError(TrainformError, ValueError):
    """A sweep's search space, sampling, policy or HyperDrive file is invalid.

    ``field`` names what is wrong (a parameter name or a dotted HyperDrive field), or is empty.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        self.field = field
        super().__init__(message)


# The arguments of each distribution, in Azure ML's positional order.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "choice": ("values",),
    "randint": ("upper",),
    "uniform": ("min", "max"),
    "quniform": ("min", "max", "q"),
    "loguniform": ("min", "max"),
    "qloguniform": ("min", "max", "q"),
    "normal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"),
    "qlognormal": ("mu", "sigma", "q"),
}

ARGUMENT_NAMES: tuple[str, ...] = ("values", "upper", "min", "max", "q", "mu", "sigma")

# exp(x) overflows a float above this.
_MAX_EXPONENT = math.log(sys.float_info.max)


def _quoted(names: list[str] | tuple[str, ...]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _decimals(q: float) -> int:
    exponent = Decimal(repr(q)).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def quantize(value: float, q: float) -> int | float:
    """``round(value / q) * q``: an ``int`` when ``q`` is an ``int``, else a float rounded to
    the decimals of ``q`` (which removes binary noise such as 0.30000000000000004)."""
    steps = round(value / q)
    if isinstance(q, int) and not isinstance(q, bool):
        return steps * q
    return round(steps * q, _decimals(q))


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter: its name (``lr``, or ``--penalty`` from a HyperDrive file), its
    distribution and that distribution's named arguments.

    Construction does not validate; call :meth:`validate` (``parameter_from_block`` and the
    samplers do)."""

    name: str
    distribution: str
    args: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def is_discrete(self) -> bool:
        """Whether the parameter takes finitely many values (``choice``, ``randint``)."""
        return self.distribution in ("choice", "randint")

    def _error(self, message: str) -> SweepSpecError:
        return SweepSpecError(f"parameter '{self.name}': {message}", field=self.name)

    def validate(self) -> None:
        """Raise :class:`SweepSpecError` naming the parameter if the distribution is unknown,
        an argument is missing, extra or of the wrong type, or a range is empty."""
        if not isinstance(self.name, str) or not self.name:
            raise SweepSpecError("a parameter needs a non-empty name")
        dist = self.distribution
        if dist not in DISTRIBUTIONS:
            hint = did_you_mean(str(dist), list(DISTRIBUTIONS))
            raise self._error(
                f"unknown distribution '{dist}'"
                + (f" ({hint})" if hint else f" (expected one of {', '.join(DISTRIBUTIONS)})")
            )
        expected = DISTRIBUTIONS[dist]
        form = f"{dist}({', '.join(expected)})"
        missing = [name for name in expected if name not in self.args]
        if missing:
            raise self._error(f"{dist} needs {_quoted(missing)} ({form})")
        extra = [name for name in self.args if name not in expected]
        if extra:
            raise self._error(f"{dist} does not take {_quoted(extra)} ({form})")

        args = self.args
        if dist == "choice":
            values = args["values"]
            if not isinstance(values, (list, tuple)):
                raise self._error(f"choice needs 'values' to be a list, not {values!r}")
            if not values:
                raise self._error("choice needs at least one value")
            return
        if dist == "randint":
            upper = args["upper"]
            if not isinstance(upper, int) or isinstance(upper, bool):
                raise self._error(f"randint needs 'upper' to be an integer, not {upper!r}")
            if upper < 1:
                raise self._error(
                    f"randint needs upper >= 1 (draws are in [0, upper)), not {upper}"
                )
            return
        for name in expected:
            if not _is_number(args[name]):
                raise self._error(f"{dist} needs '{name}' to be a number, not {args[name]!r}")
        if "min" in args and not args["min"] < args["max"]:
            raise self._error(f"{dist} needs min < max (min {args['min']}, max {args['max']})")
        if "sigma" in args and args["sigma"] <= 0:
            raise self._error(f"{dist} needs sigma > 0, not {args['sigma']}")
        if "q" in args and args["q"] <= 0:
            raise self._error(f"{dist} needs q > 0, not {args['q']}")
        if dist in ("loguniform", "qloguniform") and args["max"] > _MAX_EXPONENT:
            raise self._error(
                f"{dist} draws exp(uniform(min, max)); max {args['max']} overflows "
                f"(the exponent must be <= {_MAX_EXPONENT:.0f})"
            )

    def sample(self, rng: random.Random) -> Any:
        """One draw from the distribution, using only ``rng`` (so a seeded ``rng`` repeats)."""
        a = self.args
        dist = self.distribution
        if dist == "choice":
            return a["values"][rng.randrange(len(a["values"]))]
        if dist == "randint":
            return rng.randrange(a["upper"])
        if dist == "uniform":
            return rng.uniform(a["min"], a["max"])
        if dist == "quniform":
            return quantize(rng.uniform(a["min"], a["max"]), a["q"])
        if dist == "loguniform":
            return math.exp(rng.uniform(a["min"], a["max"]))
        if dist == "qloguniform":
            return quantize(math.exp(rng.uniform(a["min"], a["max"])), a["q"])
        if dist == "normal":
            return rng.normalvariate(a["mu"], a["sigma"])
        if dist == "qnormal":
            return quantize(rng.normalvariate(a["mu"], a["sigma"]), a["q"])
        if dist == "lognormal":
            return math.exp(rng.normalvariate(a["mu"], a["sigma"]))
        if dist == "qlognormal":
            return quantize(math.exp(rng.normalvariate(a["mu"], a["sigma"])), a["q"])
        raise self._error(f"unknown distribution '{dist}'")

    def describe(self) -> str:
        """The distribution as written in Azure ML's notation: ``loguniform(min=-9, max=-2)``."""
        args = ", ".join(
            f"{name}={self.args.get(name)!r}"
            for name in DISTRIBUTIONS.get(self.distribution, tuple(self.args))
        )
        return f"{self.distribution}({args})"


def parameter_from_block(name: str, attrs: Mapping[str, Any]) -> Parameter:
    """The validated parameter of an HCL block such as
    ``parameter "lr" { distribution = "loguniform"  min = -9  max = -2 }``.

    ``attrs`` holds ``distribution`` and the distribution's arguments (``values``, ``upper``,
    ``min``, ``max``, ``q``, ``mu``, ``sigma``); attributes whose value is ``None`` count as
    absent. The distribution name is case-insensitive. Raises :class:`SweepSpecError`."""
    allowed = ("distribution", *ARGUMENT_NAMES)
    for key in attrs:
        if key not in allowed:
            hint = did_you_mean(key, list(allowed))
            raise SweepSpecError(
                f"parameter '{name}': unknown attribute '{key}'"
                + (f" ({hint})" if hint else f" (expected {', '.join(allowed)})"),
                field=name,
            )
    distribution = attrs.get("distribution")
    if not isinstance(distribution, str) or not distribution:
        raise SweepSpecError(
            f"parameter '{name}': 'distribution' is required (one of {', '.join(DISTRIBUTIONS)})",
            field=name,
        )
    args = {k: v for k, v in attrs.items() if k != "distribution" and v is not None}
    if isinstance(args.get("values"), tuple):
        args["values"] = list(args["values"])
    parameter = Parameter(name, distribution.strip().lower(), args)
    parameter.validate()
    return parameter


@dataclass(frozen=True)
class SearchSpace:
    """The parameters a sweep samples, in declaration order (which fixes the grid order)."""

    parameters: tuple[Parameter, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def validate(self) -> None:
        """Raise :class:`SweepSpecError` if the space is empty, a name repeats, or any
        parameter is invalid."""
        if not self.parameters:
            raise SweepSpecError("a sweep needs at least one parameter")
        seen: set[str] = set()
        for parameter in self.parameters:
            if parameter.name in seen:
                raise SweepSpecError(
                    f"parameter '{parameter.name}' is declared more than once",
                    field=parameter.name,
                )
            seen.add(parameter.name)
            parameter.validate()

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One draw of every parameter, in declaration order."""
        return {p.name: p.sample(rng) for p in self.parameters}
