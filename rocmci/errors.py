"""Errors users see: one line per problem, never a traceback; each family exits with its own code (README: Exit codes).

Tasks that ran to the end but found a failure (a build failed, a verdict is not pass) raise no exception: they print
their summary table and exit with the family's code from ExitCode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """What a non-zero exit means, for scripts and CI steps that branch on it."""

    FAILED = 1  # a check the command made does not hold (verify-lock, doctor: NOT READY), or another failure
    BAD_INPUT = 2  # matrix.yaml, a flag, a lock or report file: what the user gave is wrong
    ENGINE = 3  # the Docker engine is unreachable or failed
    REGISTRY = 4  # the OCI registry is unreachable, refused (auth, push, pull) or answered nonsense
    BUILD_FAILED = 5  # an image did not build or did not pass its build-time gates
    VALIDATION_FAILED = 6  # the checks ran and an entry is not a pass (a check failed or errored, a verdict is not pass)
    PUBLISH_FAILED = 7  # an image or its report was not published (the table says why)
    INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT)


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
    """Base for errors that tasks print as plain lines and exit non-zero on. An error of no other family is about
    what the user gave (a flag, a file, a selection), hence BAD_INPUT."""

    exit_code: int = ExitCode.BAD_INPUT


class InputError(RocmciError):
    """Bad input: a flag, a file or a selection that cannot work."""

    exit_code = ExitCode.BAD_INPUT


class MatrixError(InputError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EngineError(RocmciError):
    exit_code = ExitCode.ENGINE


class EngineUnavailable(EngineError):
    pass


class BuildError(RocmciError):
    """A build cannot start as asked (a flag, a wheel, the CA, no builder). A build that ran and failed is a row of the
    build table, and `invoke build` then exits BUILD_FAILED."""


class RegistryError(RocmciError):
    exit_code = ExitCode.REGISTRY


class ValidationFailed(RocmciError):
    """The checks ran and did not pass; raised where a command has no summary table to end with."""

    exit_code = ExitCode.VALIDATION_FAILED


class RunError(RocmciError):
    """Validation cannot start as asked (no entries, an image neither built nor pullable, an unsupported run flag)."""
