"""tests/helpers.py's CI rule, through a real pytest run: a missing module or service fails in CI, skips with its reason
elsewhere, and never breaks collection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, require_module

MISSING = "rocmci_no_such_module_for_the_helper_test"

MODULE_LEVEL = f"""
from tests.helpers import require_module

missing = require_module("{MISSING}", "install it")


def test_uses_it():
    assert missing
"""

IN_A_FIXTURE = """
import pytest

from tests.helpers import unavailable


@pytest.fixture
def service():
    unavailable("no frobnicator on this host")


def test_needs_it(service):
    pass


def test_independent():
    pass
"""


def run_pytest(tmp_path: Path, source: str, ci: bool) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_subject.py"
    test_file.write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT)} | ({"CI": "true"} if ci else {})
    command = [sys.executable, "-m", "pytest", str(test_file), "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_missing_module_skips_the_file_with_its_reason_outside_ci(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, MODULE_LEVEL, ci=False)
    assert proc.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, proc.stdout + proc.stderr  # the module was skipped
    assert "1 skipped" in proc.stdout and f"cannot import {MISSING}" in proc.stdout and "(install it)" in proc.stdout


def test_a_missing_module_fails_collection_in_ci(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, MODULE_LEVEL, ci=True)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, proc.stdout + proc.stderr  # a collection error
    assert f"cannot import {MISSING}" in proc.stdout and "CI must run scripts/test" in proc.stdout
    assert "skipped" not in proc.stdout


def test_a_missing_service_skips_outside_ci_and_fails_in_ci(tmp_path: Path) -> None:
    outside = run_pytest(tmp_path, IN_A_FIXTURE, ci=False)
    assert outside.returncode == 0 and "1 passed, 1 skipped" in outside.stdout, outside.stdout
    assert "no frobnicator on this host" in outside.stdout
    in_ci = run_pytest(tmp_path, IN_A_FIXTURE, ci=True)
    assert in_ci.returncode == pytest.ExitCode.TESTS_FAILED and "1 passed, 1 error" in in_ci.stdout, in_ci.stdout
    assert "no frobnicator on this host (CI must run scripts/test" in in_ci.stdout


def test_a_present_module_is_returned() -> None:
    assert require_module("json").dumps([1]) == "[1]"
