"""The one exception root of trainform and its structured subclasses.

Every error that crosses a layer boundary derives from :class:`TrainformError`. The CLI turns
them into a message (with file:line or address) and exit code 1; anything else is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pos:
    """A place in a configuration file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the user's files or flags: where, what, and what would be right."""

    message: str
    pos: Pos | None = None
    hint: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}"


class TrainformError(Exception):
    """Root of every error trainform raises on purpose."""


class ConfigError(TrainformError):
    """The configuration (files, variables, flags) is invalid; carries the diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic) -> None:
        self.diagnostics = diagnostics if isinstance(diagnostics, list) else [diagnostics]
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class StateError(TrainformError):
    """The state store cannot be read or written."""


class LockError(StateError):
    """The state is locked by another process; carries the holder's lock record."""

    def __init__(self, message: str, holder: dict[str, object] | None = None) -> None:
        self.holder = holder or {}
        super().__init__(message)


class PlanError(TrainformError):
    """A plan cannot be made or applied (stale plan file, refused destroy, bad target)."""


class PlanRefusal(PlanError):
    """A provider refused a resource at plan time (a partition that does not exist, a
    request larger than any node); carries the resource block's position. Planning stops
    there, rather than going on to report what depends on the resource."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostics = [diagnostic]
        super().__init__(str(diagnostic))


class RefreshError(PlanError):
    """Refresh could not read what exists for some recorded resources (an unreachable host,
    a changed host key); carries the address -> cause of each."""

    def __init__(self, causes: dict[str, str]) -> None:
        self.causes = causes
        lines = [f"cannot read {addr}: {cause}" for addr, cause in sorted(causes.items())]
        first = sorted(causes)[0]
        super().__init__(
            "\n".join(lines) + "\n\nRefresh reads every recorded resource before planning. To plan "
            "without reading them, pass -refresh=false (the plan then trusts the recorded "
            f"state), or plan only other resources with -target (which then leaves {first} out)."
        )


class StalePlanError(PlanError):
    """A saved plan no longer matches the state or the configuration it was made from."""


class ProviderError(TrainformError):
    """A provider failed to do what was asked; carries where and what happened."""

    def __init__(
        self,
        message: str,
        *,
        address: str = "",
        host: str = "",
        command: str = "",
        exit_code: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        self.address = address
        self.host = host
        self.command = command
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        super().__init__(message)


class ProviderNotFound(ProviderError):
    """No installed provider handles the requested type."""


class Interrupted(TrainformError):
    """The user interrupted the command (Ctrl-C); work in flight was finished and saved."""
