"""What every doctor check returns, and how checks run host tools (a seam tests fill with canned output)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


Runner = Callable[[Sequence[str]], tuple[int, str]]


def run_command(argv: Sequence[str], timeout: float = 120) -> tuple[int, str]:
    """Run a host command; (exit code, stdout+stderr). A missing binary or a hang is exit code 127/124."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        return 127, str(exc)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} did not answer within {timeout:.0f} s"
    return done.returncode, (done.stdout or "") + (done.stderr or "")


def find_tool(candidates: Sequence[str], which: Callable[[str], str | None] = shutil.which) -> str | None:
    for candidate in candidates:
        found = which(candidate)
        if found:
            return found
    return None


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())
