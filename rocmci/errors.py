"""Errors users see: one line per problem, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class RocmciError(Exception):
    """Base for errors that tasks print as plain lines and exit non-zero on."""

    exit_code = 2


class MatrixError(RocmciError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EngineUnavailable(RocmciError):
    pass


class BuildError(RocmciError):
    pass


class RegistryError(RocmciError):
    pass


class RunError(RocmciError):
    pass
