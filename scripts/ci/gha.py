"""What every scripts/ci job script shares: GitHub Actions' step outputs and job summary (GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY), `::error::`/`::notice::` lines, and running rocmci's invoke tasks with the command echoed.
Standard library only, so a script runs the same on a hosted runner, a self-hosted one, or in tests/test_fleet.py.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]


def fail(script: str, message: str, code: int = 1) -> NoReturn:
    print(f"::error::scripts/ci/{script}: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def notice(message: str) -> None:
    print(f"::notice::{message}", flush=True)


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def required(script: str, *names: str) -> list[str]:
    missing = [name for name in names if not env(name)]
    if missing:
        fail(script, f"{', '.join(missing)}: required in the environment")
    return [env(name) for name in names]


def output(**values: str) -> None:
    """Step outputs (`steps.<id>.outputs.<key>`); one line each, so values carry no newline."""
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        for key, value in values.items():
            assert "\n" not in value, f"output {key} spans lines"
            out.write(f"{key}={value}\n")


def summary(markdown: str) -> None:
    with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as out:
        out.write(markdown.rstrip("\n") + "\n\n")


def invoke_args(task: str, *args: str) -> list[str]:
    """`invoke <task> ...` with INVOKE (default .venv/bin/invoke; may be a command with arguments) and MATRIX."""
    matrix = ["--file", env("MATRIX")] if env("MATRIX") else []
    return [*shlex.split(env("INVOKE") or ".venv/bin/invoke"), task, *args, *matrix]


def run(command: list[str], sudo: bool = False) -> int:
    """Run from the repository root with the command echoed first (as `set -x` would); returns its exit status."""
    if sudo and os.geteuid() != 0:
        command = ["sudo", "--preserve-env=DOCKER_HOST,PYTHONPATH,PATH", *command]
    print("+ " + shlex.join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def repository(name: str) -> list[str]:
    """`--registry <repository>` from an env var such as STAGING_REPOSITORY (lower-cased: GHCR repositories are lower
    case, GitHub owners need not be), or nothing: the matrix's own repository."""
    value = env(name).lower()
    return ["--registry", value] if value else []


def reports_dir() -> Path:
    reports = Path(env("REPORTS") or "reports")
    return reports if reports.is_absolute() else ROOT / reports


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
