"""Error families exit with their own codes (rocmci.errors.ExitCode), through the real CLI, and README's table says so."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rocmci.errors import BuildError, EngineUnavailable, ExitCode, InputError, MatrixError, RegistryError, RocmciError, RunError
from tests.helpers import ROOT, BuiltImages, FixtureWheels, write_fixture_matrix


def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "invoke", *args]
    return subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_exit(run: subprocess.CompletedProcess[str], code: ExitCode, says: str) -> None:
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and says in run.stderr, run.stderr


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_families_have_distinct_codes() -> None:
    codes = [member.value for member in ExitCode]
    assert len(codes) == len(set(codes)) and 0 not in codes
    assert MatrixError([]).exit_code == InputError().exit_code == ExitCode.BAD_INPUT
    assert EngineUnavailable().exit_code == ExitCode.ENGINE and RegistryError().exit_code == ExitCode.REGISTRY
    assert RocmciError().exit_code == RunError().exit_code == BuildError().exit_code == ExitCode.BAD_INPUT


def test_readme_documents_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| ([a-z ]+) \|", section, re.M))
    assert rows.pop("0") == "success"
    assert {int(code): name for code, name in rows.items()} == {m.value: m.name.lower().replace("_", " ") for m in ExitCode}


def test_bad_input_exits_2() -> None:
    run = invoke("matrix", "--file", "no/such/matrix.yaml")
    assert_one_line_exit(run, ExitCode.BAD_INPUT, "cannot read the matrix file")


def test_an_unreachable_engine_exits_3(tmp_path: Path) -> None:
    run = invoke("validate", "--gpu", "local", "--reports", str(tmp_path), env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert_one_line_exit(run, ExitCode.ENGINE, f"{tmp_path}/no.sock")
    assert not any(tmp_path.iterdir()), "nothing is written when the engine cannot be reached"


def test_an_unreachable_registry_exits_4(tmp_path: Path) -> None:
    run = invoke("pull", "--gpu", "local", "--registry", f"127.0.0.1:{closed_port()}/rocmci-none", timeout=120)
    assert_one_line_exit(run, ExitCode.REGISTRY, "127.0.0.1")


@pytest.mark.docker
def test_a_failed_validation_exits_6(built_images: BuiltImages, fixture_wheels: FixtureWheels, tmp_path: Path) -> None:
    """The bad fixture's aiter lacks layernorm2d_fwd: its probe fails, so `invoke validate` ends with the table and 6."""
    matrix = write_fixture_matrix(tmp_path / "fixture.yaml", built_images.repository, fixture_wheels, ["fixture-bad"])
    run = invoke("validate", "--gpu", "local", "--file", str(matrix), "--reports", str(tmp_path / "reports"), timeout=900)
    assert run.returncode == ExitCode.VALIDATION_FAILED, run.stdout + run.stderr
    assert "checks failed" in run.stdout and "Traceback" not in run.stderr
