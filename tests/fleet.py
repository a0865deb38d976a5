"""A fleet on one machine, for tests/test_fleet.py and benchmarks/bench_fleet.py: images.yml's job scripts
(scripts/ci/*) run as GitHub Actions runs them, each step with its own GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and
RUNNER_TEMP files, its own reports folder (what the job's artifacts hold), and DOCKER_HOST at the engine of the
machine the job runs on: a builder engine, a runner engine (tests/engines.py), or a dead socket for promotion.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX_REPOSITORY_LINE = "repository: 127.0.0.1:5000/rocmci\n"


@dataclass(frozen=True)
class Repositories:
    staging: str
    release: str


def unique_repositories(registry: str) -> Repositories:
    name = f"rocmci-fleet-{uuid.uuid4().hex[:8]}"
    return Repositories(staging=f"{registry}/{name}-staging", release=f"{registry}/{name}-release")


def fleet_matrix(path: Path, repositories: Repositories) -> Path:
    """The project's matrix.yaml with its own staging and release repositories (same stacks, so the same tags)."""
    text = (ROOT / "matrix.yaml").read_text()
    assert MATRIX_REPOSITORY_LINE in text, "matrix.yaml no longer names its release repository on one line"
    path.write_text(
        text.replace(MATRIX_REPOSITORY_LINE, f"repository: {repositories.release}\nstaging: {repositories.staging}\n")
    )
    return path


@dataclass(frozen=True)
class StepRun:
    code: int
    log: str
    outputs: dict[str, str]
    summary: str


def run_step(script: str, workdir: Path, docker_host: str, env: dict[str, str], timeout: float = 1800) -> StepRun:
    """One job step: `scripts/ci/<script>` from the checkout, with a fresh GITHUB_OUTPUT/GITHUB_STEP_SUMMARY/RUNNER_TEMP
    under workdir and DOCKER_HOST at this job's machine. env adds the step's inputs (GPU, ENTRY, MATRIX, REPORTS...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    temp = workdir / "runner-temp"
    temp.mkdir(exist_ok=True)
    output, summary = workdir / "github-output", workdir / "step-summary"
    output.write_text("")
    summary.write_text("")
    step_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ROCMCI_REGISTRY_"))},
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "INVOKE": f"{sys.executable} -m invoke",
        "DOCKER_HOST": docker_host,
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(temp),
        "RUNNER_ENVIRONMENT": "self-hosted",
        **env,
    }
    interpreter = ["bash"] if script in ("cleanup", "install") else [sys.executable]
    done = subprocess.run(
        [*interpreter, f"scripts/ci/{script}"],
        cwd=ROOT,
        env=step_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return StepRun(done.returncode, done.stdout, outputs, summary.read_text())


def hand_over(source: Path, dest: Path, *relative: str) -> None:
    """What an artifact carries from one job's reports folder to the next job's (small JSON files only)."""
    for name in relative:
        origin = source / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True)
        else:
            shutil.copy2(origin, target)


def first(outputs: dict[str, str], key: str) -> dict:
    """The single item of a plan output matrix."""
    [item] = json.loads(outputs[key])["include"]
    return item
