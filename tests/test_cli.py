"""The tasks as a user runs them: flags reach the functions, bad input is one line and a non-zero exit."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_every_task_is_listed_with_one_line():
    out = _invoke("--list").stdout
    for name in ("matrix", "base", "wheelhouse", "build", "validate", "report", "publish", "pull", "pipeline", "doctor", "clean"):
        assert f"  {name} " in out, name


LISTING = """\
import sys
from invoke.main import program
try:
    program.run(["invoke", "--list"], exit=False)
finally:
    heavy = ("docker", "requests", "pydantic", "rocmci.cli", "rocmci.plan", "rocmci.build")
    print("imported:" + ",".join(sorted(name for name in heavy if name in sys.modules)), file=sys.stderr)
"""


def test_listing_tasks_imports_no_heavy_module():
    """`invoke --list` starts fast: the Docker SDK, requests, pydantic and rocmci's stages load only when a task runs."""
    listed = subprocess.run([sys.executable, "-c", LISTING], cwd=ROOT, capture_output=True, text=True, check=False)
    assert "  matrix " in listed.stdout, listed.stderr
    assert listed.stderr.strip().splitlines()[-1:] == ["imported:"], listed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("build", "--gpu", "mi999x"), "unknown GPU target 'mi999x'"),
        (("build", "--gpu", "local", "--backend", "kaniko"), "--backend: expected auto, sdk or bake"),
        (("build", "--gpu", "local", "--bake-ca", "--push", "--ca-cert", "/etc/hostname"), "--bake-ca with --push"),
        (("build", "--gpu", "local", "--ca-cert", "/nonexistent.pem"), "--ca-cert /nonexistent.pem: no such file"),
        (("validate", "--gpu", "mi355x", "--entry", "nope"), "no entry 'nope'"),
        (("wheelhouse", "--gpu", "local", "--torch-index", "maybe"), "--torch-index: expected auto, yes or no"),
        (("doctor", "--min-free-gb", "lots"), "--min-free-gb: expected a number"),
        (("clean", "--keep", "-1"), "--keep: expected a whole number >= 0"),
        (("clean", "--stop-timeout", "soon"), "--stop-timeout: expected a whole number"),
        (("matrix", "--file", "no/such/matrix.yaml"), "cannot read the matrix file"),
        (("build",), "--gpu: required: the GPU target to work on, one of mi300x, mi325x, mi350x, mi355x, local"),
        (("pipeline", "--no-publish"), "--gpu: required"),
        (("matrix", "--gpus", "mi355x mi999x"), "--gpus: expected GPU targets of the matrix"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args, message):
    run = _invoke(*args)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert message in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_short_flags_mean_one_thing_in_every_task():
    from tasks import SHORT_FLAGS

    listed = _invoke("--list").stdout.split()
    seen: set[str] = set()
    for name in ("matrix", "base", "wheelhouse", "build", "validate", "report", "publish", "pull", "pipeline", "doctor", "clean"):
        assert name in listed
        shorts = dict(re.findall(r"^\s+-(\w)(?: \w+)?, --([a-z-]+)", _invoke("--help", name).stdout, re.MULTILINE))
        assert all(SHORT_FLAGS.get(long.replace("-", "_")) == short for short, long in shorts.items()), (name, shorts)
        seen |= set(shorts)
    assert seen == set(SHORT_FLAGS.values())


def test_matrix_json_into_a_closed_pipe_is_quiet():
    run = subprocess.run(
        f"{sys.executable} -m invoke matrix --json | head -c 5", shell=True, cwd=ROOT, capture_output=True, text=True
    )
    assert run.stdout == '{"inc' and "Traceback" not in run.stderr


def test_matrix_json_feeds_github_actions():
    document = json.loads(_invoke("matrix", "--json").stdout)
    gpus = {item["gpu"] for item in document["include"]}
    assert gpus == {"mi300x", "mi325x", "mi350x", "mi355x", "local"}


def test_wheelhouse_task_downloads_what_the_local_stack_installs(tmp_path):
    run = _invoke("wheelhouse", "--gpu", "local", "--torch-index", "no", "--dest", str(tmp_path))
    assert run.returncode == 0, run.stderr
    names = {p.name.split("-")[0].lower() for p in tmp_path.glob("*.whl")}
    assert {"torch", "amd_aiter", "packaging"} <= names
