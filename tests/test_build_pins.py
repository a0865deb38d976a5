"""aiter pinned by commit and the Triton choice, in real image builds of small `local` (CPU) images.

The aiter here is a test double (tests/fixtures/aiter_scm_double) committed into a local git repository: its
version comes from setuptools_scm as aiter's does, and its setup.py replaces Triton as aiter's does.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOUBLE = ROOT / "tests" / "fixtures" / "aiter_scm_double"
BUILD_TOOLS = ("ninja", "pybind11", "setuptools", "setuptools-scm", "wheel")
GIT = ["git", "-c", "user.name=rocmci test", "-c", "user.email=test@rocmci.invalid", "-c", "init.defaultBranch=main"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def triton_wheel(dest: Path, version: str) -> Path:
    """A stand-in `triton` wheel (a package directory and dist-info), what aiter's build fetches from PyPI."""
    wheel = dest / f"triton-{version}-py3-none-any.whl"
    info = f"triton-{version}.dist-info"
    files = {
        "triton/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: triton\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: rocmci-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@dataclass(frozen=True)
class Repos:
    tagged: Path  # v0.1.20, then two commits
    untagged: Path  # the same history without the tag
    head: str  # two commits past v0.1.20
    one_past: str  # one commit past v0.1.20
    stamped: str  # a side-branch commit whose version names another commit
    untagged_head: str


def make_repo(path: Path, tag: bool) -> list[str]:
    """The double's history: a release commit (tagged v0.1.20 when `tag`), then two fixes."""
    shutil.copytree(DOUBLE, path)
    (path / "vendor").mkdir()
    triton_wheel(path / "vendor", "3.7.0")
    git(path, "init", "-q")
    commits = []
    for message in ("release", "fix one", "fix two"):
        (path / "CHANGES").write_text(f"{path.name}: {message}\n", encoding="utf-8")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", message)
        commits.append(git(path, "rev-parse", "HEAD"))
        if tag and message == "release":
            git(path, "tag", "v0.1.20")
    return commits


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Repos:
    if shutil.which("git") is None:
        pytest.fail("git is not installed")
    base = tmp_path_factory.mktemp("aiter-repos")
    commits = make_repo(base / "aiter", tag=True)
    untagged = make_repo(base / "aiter-untagged", tag=False)
    tagged = base / "aiter"
    git(tagged, "checkout", "-q", "-b", "stamped", commits[1])
    pyproject = tagged / "pyproject.toml"
    text = pyproject.read_text().replace('dynamic = ["version"]', 'version = "0.1.21.dev2+gdeadbee"')
    pyproject.write_text(text.replace("[tool.setuptools_scm]", "[tool.not_setuptools_scm]"))
    git(tagged, "commit", "-q", "-am", "a version written by hand")
    stamped = git(tagged, "rev-parse", "HEAD")
    git(tagged, "checkout", "-q", "main")
    return Repos(tagged, base / "aiter-untagged", commits[2], commits[1], stamped, untagged[2])


@pytest.fixture(scope="module")
def pins_wheelhouse(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared wheelhouse plus what install_aiter.sh installs for a source build (kept in .cache between runs)."""
    tools = ROOT / ".cache" / "build-tool-wheels"
    if not all(any(tools.glob(f"{name.replace('-', '_')}-*.whl")) for name in BUILD_TOOLS):
        command = [sys.executable, "-m", "pip", "download", "-q", "--dest", str(tools), "--only-binary=:all:"]
        subprocess.run([*command, "--python-version", "3.11", *BUILD_TOOLS], check=True, timeout=600)
    house = tmp_path_factory.mktemp("wheelhouse")
    for wheel in [*wheelhouse.glob("*.whl"), *tools.glob("*.whl")]:
        if not (house / wheel.name).exists():
            (house / wheel.name).symlink_to(wheel.resolve())
    return house


STACK = """\
  {name}:
    base_image: {{name: rocmci/debian, tag: bookworm, local: true}}
    python: "3.11"
    torch: {{version: 2.13.0, index: https://download.pytorch.org/whl/cpu}}
    aiter: {{git: {{repo: "file://{repo}", ref: {ref}}}}}
    fixture: true
{triton}"""


@pytest.fixture(scope="module")
def builds(engine, registry, repos: Repos, pins_wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four entries built once: the matching commit (Triton from aiter), a commit whose version names another one,
    the torch index's Triton kept by default (aiter's build replaces it anyway), and a clone without tags."""
    from rocmci.build import BuildOptions, build_entries
    from rocmci.plan import load_plan

    repository = f"{registry}/rocmci-pins-{uuid.uuid4().hex[:8]}"
    triton_from_aiter = "    triton: {aiter: 3.7.0}\n"
    stacks = {
        "match": (repos.tagged, repos.head, triton_from_aiter),
        "stamped": (repos.tagged, repos.stamped, triton_from_aiter),
        "triton-kept": (repos.tagged, repos.one_past, ""),
        "no-tags": (repos.untagged, repos.untagged_head, triton_from_aiter),
    }
    text = f"version: 1\nrepository: {repository}\ntargets:\n  local:\n    kind: cpu\n    runs_on: [ubuntu-latest]\nstacks:\n"
    text += "".join(STACK.format(name=n, repo=r, ref=c, triton=t) for n, (r, c, t) in stacks.items())
    text += f"matrix:\n  gpu: [local]\n  stack: [{', '.join(stacks)}]\n"
    matrix_file = tmp_path_factory.mktemp("matrix") / "pins.yaml"
    matrix_file.write_text(text)
    plan = load_plan(matrix_file)
    options = BuildOptions.resolve(repository, wheelhouse=pins_wheelhouse, log_dir=tmp_path_factory.mktemp("logs"))
    results = {}
    try:
        for entry, result in zip(plan.entries, build_entries(plan, list(plan.entries), options), strict=True):
            results[entry.stack_name] = (entry, result)
        yield results
    finally:
        for _entry, result in results.values():
            if result.status == "built":
                engine.images.remove(result.image_ref, force=True)


def gate_failures(result) -> list[str]:
    return [
        line.split("rocmci gate FAILED: ", 1)[1] for line in result.log.read_text().splitlines() if "rocmci gate FAILED: " in line
    ]


def test_commit_pin_builds_when_aiter_matches_and_the_probe_names_it(builds: dict, repos: Repos) -> None:
    entry, result = builds["match"]
    assert result.status == "built", (result.detail, result.log and result.log.read_text()[-3000:])
    assert entry.build_args["AITER_COMMIT"] == repos.head and entry.id.endswith(f"aiter{repos.head[:12]}")
    versions = json.loads(docker_run(result.image_ref, "cat", "/opt/rocmci/versions.json"))
    assert versions["aiter"]["commit"] == repos.head
    assert versions["aiter"]["version"] == f"0.1.21.dev2+g{versions['aiter']['version_commit']}"
    assert repos.head.startswith(versions["aiter"]["version_commit"])
    assert versions["triton"] | {"torch_index": None} == {
        "dist": "triton",
        "version": "3.7.0",
        "rocm_build": False,
        "source": "aiter",
        "pin": "3.7.0",
        "torch_index": None,
    }
    probe = json.loads(
        docker_run(result.image_ref, "python", "-P", "/opt/rocmci/checks/probe.py", "--cpu-only", "--expect-aiter", repos.head)
    )
    assert probe["versions"]["aiter_commit"] == versions["aiter"]["version_commit"]
    assert (probe["versions"]["triton_dist"], probe["versions"]["triton"], probe["versions"]["triton_rocm"]) == (
        "triton",
        "3.7.0",
        False,
    )
    assert "aiter.version_mismatch" not in {f["code"] for f in probe["findings"]}


def test_commit_pin_fails_when_aiter_names_another_commit(builds: dict, repos: Repos) -> None:
    _, result = builds["stamped"]
    assert result.status == "failed"
    assert f"amd-aiter 0.1.21.dev2+gdeadbee was built from commit deadbee, the stack pins {repos.stamped}" in gate_failures(
        result
    )


def test_aiter_build_replacing_triton_fails_its_gate(builds: dict) -> None:
    entry, result = builds["triton-kept"]
    assert entry.build_args["AITER_USE_SYSTEM_TRITON"] == "1" and entry.build_args["TRITON_SOURCE"] == "torch"
    assert result.status == "failed"
    assert any(
        f.startswith("aiter's build installed triton 3.7.0 where the torch index installed no Triton")
        for f in gate_failures(result)
    ), gate_failures(result)


def test_clone_without_tags_is_caught(builds: dict) -> None:
    _, result = builds["no-tags"]
    failures = gate_failures(result)
    assert result.status == "failed" and any("names no release" in f for f in failures), failures


def docker_run(image: str, *command: str) -> str:
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, *command], capture_output=True, text=True, check=False
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done.stdout


# -------------------------------------------------------------- the gates and the matrix, without a build


def load_gates():
    spec = importlib.util.spec_from_file_location("rocmci_image_gates", ROOT / "images" / "gates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        (
            {"pytorch-triton-rocm": "3.5.0"},
            {"triton": "3.7.0"},
            "aiter's build replaced pytorch-triton-rocm 3.5.0 with triton 3.7.0",
        ),
        ({"pytorch-triton-rocm": "3.5.0"}, {}, "aiter's build removed pytorch-triton-rocm 3.5.0 and installed no Triton"),
        (
            {"pytorch-triton-rocm": "3.5.0"},
            {"pytorch-triton-rocm": "3.5.1"},
            "replaced pytorch-triton-rocm 3.5.0 with pytorch-triton-rocm 3.5.1",
        ),
        ({"pytorch-triton-rocm": "3.5.0"}, {"pytorch-triton-rocm": "3.5.0", "triton": "3.7.0"}, "installed triton 3.7.0 beside"),
        ({"pytorch-triton-rocm": "3.5.0"}, {"pytorch-triton-rocm": "3.5.0"}, None),
        ({}, {}, None),
    ],
)
def test_triton_gate_names_the_change(before: dict, after: dict, message: str | None) -> None:
    failures = load_gates().check_triton("torch", "", before, after)
    assert (failures == []) if message is None else (len(failures) == 1 and message in failures[0])


def test_triton_gate_for_aiters_triton() -> None:
    gates = load_gates()
    assert gates.check_triton("aiter", "3.7.0", {"pytorch-triton-rocm": "3.5.0"}, {"triton": "3.7.0"}) == []
    [failure] = gates.check_triton("aiter", "3.7.0", {}, {"pytorch-triton-rocm": "3.5.0"})
    assert "takes triton 3.7.0 from aiter's build" in failure and "pytorch-triton-rocm 3.5.0 is installed" in failure


@pytest.mark.parametrize(
    ("version", "record", "problem"),
    [
        (f"0.1.21.dev3+g{COMMIT[:7]}", {"commit": COMMIT, "describe": f"v0.1.20-3-g{COMMIT[:7]}"}, None),
        ("0.1.20", {"commit": COMMIT, "describe": f"v0.1.20-0-g{COMMIT[:7]}"}, None),  # a tagged commit
        ("0.1.20", {"commit": COMMIT, "describe": f"v0.1.20-2-g{COMMIT[:7]}"}, "names no commit"),
        (f"0.1.dev1+g{COMMIT[:7]}", {"commit": COMMIT, "describe": ""}, "names no release"),  # setuptools_scm 8
        (f"0.1.1.dev1+g{COMMIT[:9]}", {"commit": COMMIT, "describe": ""}, "names no release"),  # setuptools_scm 10
        ("0.1.21.dev3+gfedcba9", {"commit": COMMIT, "describe": "v0.1.20-3-gfedcba9"}, "was built from commit fedcba9"),
        (f"0.1.21.dev3+g{COMMIT[:7]}", {"commit": "f" * 40, "describe": ""}, f"the aiter checkout is at {'f' * 40}"),
    ],
)
def test_commit_gate(version: str, record: dict, problem: str | None) -> None:
    failures = load_gates().check_aiter_commit(version, COMMIT, record)
    assert (failures == []) if problem is None else any(problem in f for f in failures), failures


MATRIX = """\
version: 1
targets:
  local: {{kind: cpu, runs_on: [ubuntu-latest]}}
stacks:
  s:
    base_image: {{name: rocmci/debian, tag: bookworm, local: true}}
    python: "3.11"
    torch: {{version: 2.13.0, index: https://download.pytorch.org/whl/cpu}}
    aiter: {aiter}
{triton}matrix: {{gpu: [local], stack: [s]}}
"""


@pytest.mark.parametrize(
    ("aiter", "triton", "error"),
    [
        (f"{{git: {{repo: https://github.com/ROCm/aiter, ref: {COMMIT}}}}}", "", None),
        ("{git: {repo: https://github.com/ROCm/aiter, ref: v0.1.20}}", "    triton: {aiter: 3.7.0}\n", None),
        ("{git: {repo: https://github.com/ROCm/aiter, ref: 0123456}}", "", "a full 40-hex commit hash"),
        ("{git: {repo: https://github.com/ROCm/aiter, ref: main}}", "", "a branch pins nothing"),
        ("{pypi: 0.1.7.post2.dev18}", "    triton: {aiter: 3.7.0}\n", "needs a git aiter source"),
        ("{pypi: 0.1.7.post2.dev18}", "    triton: bundled\n", "stacks.s.triton"),
    ],
)
def test_matrix_commit_and_triton_fields(aiter: str, triton: str, error: str | None) -> None:
    from rocmci.plan import MatrixError, parse_matrix

    text = MATRIX.format(aiter=aiter, triton=triton)
    if error is None:
        stack = parse_matrix(text)[0].stacks["s"]
        assert stack.aiter.git.commit == (COMMIT if COMMIT in aiter else None)
        return
    with pytest.raises(MatrixError) as info:
        parse_matrix(text, "m.yaml")
    assert any(error in str(p) and str(p).startswith("m.yaml:") for p in info.value.problems), info.value.problems
