"""Errors with a place and a remedy, mapped to the CLI's exit codes."""

from __future__ import annotations


class ProvlensError(Exception):
    """An error the CLI reports as one line; ``exit_code`` follows DESIGN.md."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ProvlensError):
    """Bad arguments or configuration (exit 2)."""

    exit_code = 2


class BadInput(ProvlensError):
    """Input data that cannot be read (exit 3). ``where`` is `file:line` or `file:record N`."""

    exit_code = 3

    def __init__(self, where: str, problem: str, remedy: str = "") -> None:
        text = f"{where}: {problem}"
        if remedy:
            text += f"; {remedy}"
        super().__init__(text)
        self.where = where
        self.problem = problem


class RemoteError(ProvlensError):
    """A remote service or authentication failed (exit 4)."""

    exit_code = 4
