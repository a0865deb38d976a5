"""`invoke bisect` and `invoke bump` against a real local package index (pypiserver) serving eight releases of the
aiter test double (tests/fixtures/aiter_series.py: 0.1.12-0.1.14 and 0.1.17 lack layernorm2d_fwd), through real pip
installs in real `local` image builds, run the way the workflow runs them (scripts/ci/bisect, scripts/ci/bump)."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

import aiter_series

from rocmci import bisect

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "bump.yml"

SERIES_MATRIX = """\
# rocmci TEST FIXTURE matrix: its aiter is a test double served by a local pypiserver.
version: 1
repository: {repository}
targets:
  local:
    kind: cpu
    runs_on: [ubuntu-latest]
    device_policy: {{devices: [], group_add: [], shm_size: 2g, network: none}}
stacks:
  series:
    base_image: {{name: {base_name}, tag: {base_tag}, local: true}}
    python: "3.11"
    torch: {{version: 2.13.0, index: {torch_index}}}
    aiter: {{pypi: "{pin}", index: {index}}}
    fixture: true
matrix:
  gpu: [local]
  stack: [series]
"""


def write_matrix(
    path: Path, repository: str, index: str, pin: str = "0.1.10", torch_index: str = "", base: str = "rocmci/debian:bookworm"
) -> Path:
    torch_index = torch_index or "https://download.pytorch.org/whl/cpu"
    base_name, base_tag = base.rsplit(":", 1)
    text = SERIES_MATRIX.format(
        repository=repository, index=index, pin=pin, torch_index=torch_index, base_name=base_name, base_tag=base_tag
    )
    path.write_text(text)
    return path


def private_base(engine, name: str) -> str:
    """rocmci/debian:bookworm under a new image id (one label more). The legacy builder takes a cached layer from
    the newest image with the same parent and instruction, so on an engine that other checkouts build on, a chain
    that shares the base with theirs can switch to one of theirs mid-build; a base of its own keeps it apart."""
    import io

    from rocmci.build import ensure_local_base
    from rocmci.plan import BaseImage
    from rocmci.progress import Progress

    ensure_local_base(BaseImage(name="rocmci/debian", tag="bookworm", local=True), Progress())
    dockerfile = f"FROM rocmci/debian:bookworm\nLABEL io.rocmci.test-base={name}\n".encode()
    engine.images.build(fileobj=io.BytesIO(dockerfile), tag=f"rocmci-test/debian:{name}", rm=True)
    return f"rocmci-test/debian:{name}"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def aiter_index(tmp_path_factory):
    packages = tmp_path_factory.mktemp("aiter-index")
    wheels = aiter_series.write_series(packages)
    assert len(wheels) >= 8
    index = aiter_series.start_index(packages)
    yield index
    index.stop()


@pytest.fixture(scope="module")
def base_image(engine):
    ref = private_base(engine, f"bisect-{uuid.uuid4().hex[:8]}")
    yield ref
    engine.images.remove(ref, noprune=False)


@pytest.fixture(scope="module")
def series_matrix(tmp_path_factory, aiter_index, registry, base_image) -> Path:
    repository = f"{registry}/rocmci-bisect-{uuid.uuid4().hex[:8]}"
    return write_matrix(tmp_path_factory.mktemp("matrix") / "matrix.yaml", repository, aiter_index.url, base=base_image)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reports")


# The build file server's port is a build arg of the first RUN: one port of this module's own keeps every build
# here (in this process and in the scripts it runs) on the same layers, whatever ports other builds hold.
FILESERVER_PORT = str(aiter_series.free_port())


@pytest.fixture(scope="module")
def warm_layers(engine, series_matrix, wheelhouse, tmp_path_factory):
    """The stack's current entry (aiter 0.1.10), built once: every layer below aiter is then in the engine's cache."""
    from rocmci.build import BuildOptions, build_entries
    from rocmci.plan import load_plan

    plan = load_plan(series_matrix)
    options = BuildOptions.resolve(
        plan.repository, wheelhouse=wheelhouse, log_dir=tmp_path_factory.mktemp("logs"), fileserver_port=int(FILESERVER_PORT)
    )
    [result] = build_entries(plan, list(plan.entries), options)
    assert result.status in ("built", "skipped"), (result.detail, result.log)
    yield plan
    _remove_images(engine, plan.repository)


def _remove_images(engine, repository: str) -> None:
    """Only this test's own images (its repository name is unique)."""
    for image in engine.images.list(name=repository):
        for tag in image.tags:
            if tag.startswith(repository + ":"):
                engine.images.remove(tag, noprune=False)


def ci_env(**values: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "INVOKE": f"{sys.executable} -m invoke",
        "ROCMCI_FILESERVER_PORT": FILESERVER_PORT,
    }
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env | values


def series_env(matrix: Path, reports: Path, **values: str) -> dict[str, str]:
    """What the workflow's job gives scripts/ci/*, for the `series` stack on the `local` target."""
    return ci_env(GPU="local", STACK="series", MATRIX=str(matrix), REPORTS=str(reports), OUT=str(reports / "bump"), **values)


def run_script(name: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "ci" / name)], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


# ---------------------------------------------------------------- candidates (no builds)


def test_the_index_serves_the_series_through_its_simple_api(aiter_index) -> None:
    versions = bisect.index_versions(aiter_index.url, "amd-aiter")
    assert versions == list(aiter_series.SERIES)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def torch_page(tmp_path):
    """A static wheel index page, laid out like download.pytorch.org/whl/<variant>/torch/."""
    files = [
        "torch-2.12.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torch-2.13.0%2Bcpu-cp311-cp311-win_amd64.whl",
        "torch-2.14.0%2Bcpu-cp312-cp312-manylinux_2_28_x86_64.whl",
        "torch-2.15.0.dev20260901%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl",
    ]
    (tmp_path / "torch").mkdir()
    links = "\n".join(f'<a href="/whl/torch/{name}#sha256=00">{name.replace("%2B", "+")}</a><br/>' for name in files)
    (tmp_path / "torch" / "index.html").write_text(
        f"<!DOCTYPE html>\n<html><body>\n<h1>Links for torch</h1>\n{links}\n</body></html>\n"
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_torch_candidates_come_from_the_index_listing_for_the_stacks_python(torch_page) -> None:
    assert bisect.index_versions(torch_page, "torch", python="3.11") == ["2.12.0", "2.13.0", "2.15.0.dev20260901"]
    assert bisect.index_versions(torch_page, "torch", python="3.12") == ["2.14.0"]
    found = bisect.Candidates(bisect.index_versions(torch_page, "torch", python="3.11"), "page")
    assert bisect.select_range("--torch", found, "2.12.0", "2.15.0.dev20260901", pre=False) == found.versions


def test_pre_and_dev_releases_between_the_ends_only_with_pre() -> None:
    found = bisect.Candidates(["0.1.10", "0.1.11.dev3", "0.1.11rc1", "0.1.11", "0.1.12"], "a list")
    assert bisect.select_range("--aiter", found, "0.1.10", "0.1.12", pre=False) == ["0.1.10", "0.1.11", "0.1.12"]
    assert bisect.select_range("--aiter", found, "0.1.10", "0.1.12", pre=True) == found.versions


def test_torch_range_not_on_the_index_for_this_python_is_one_line(torch_page, tmp_path, aiter_index) -> None:
    matrix = write_matrix(tmp_path / "m.yaml", "127.0.0.1:5000/rocmci-unused", aiter_index.url, torch_index=torch_page)
    env = series_env(matrix, tmp_path, AXIS="torch", RANGE="2.12.0..2.14.0")
    line = one_line_error(run_script("bisect", env, timeout=120))
    assert "BAD 2.14.0 is not offered by the torch index" in line, line


def test_git_pins_bisect_over_release_tags_in_version_order(tmp_path) -> None:
    repo = tmp_path / "aiter.git"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for tag in ("v0.1.2", "v0.1.10", "v0.1.9", "not-a-release"):
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", tag], check=True, env=_git_env())
        subprocess.run(["git", "-C", str(repo), "tag", tag], check=True)
    assert bisect.git_tag_versions(f"file://{repo}") == ["v0.1.2", "v0.1.9", "v0.1.10"]
    with pytest.raises(bisect.BisectError, match="cannot list the tags"):
        bisect.git_tag_versions(f"file://{tmp_path}/missing.git")


def test_git_pins_bisect_over_first_parent_commits_from_a_blobless_clone(tmp_path) -> None:
    repo = tmp_path / "aiter.git"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    # A file:// source honours --filter=blob:none only with uploadpack.allowFilter (else git clones every blob).
    subprocess.run(["git", "-C", str(repo), "config", "uploadpack.allowFilter", "true"], check=True)
    hashes = []
    for number in range(6):
        (repo / "f.txt").write_text(f"{number}\n")
        subprocess.run(["git", "-C", str(repo), "add", "f.txt"], check=True)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"c{number}"], check=True, env=_git_env())
        hashes.append(
            subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    subprocess.run(["git", "-C", str(repo), "tag", "v0.1.1", hashes[1]], check=True)
    assert bisect.git_commits_between(f"file://{repo}", "v0.1.1", hashes[4][:10]) == hashes[1:5]
    with pytest.raises(bisect.BisectError, match="is not an ancestor of BAD"):
        bisect.git_commits_between(f"file://{repo}", hashes[4], "v0.1.1")
    with pytest.raises(bisect.BisectError, match="BAD nope is no commit, tag or branch"):
        bisect.git_commits_between(f"file://{repo}", "v0.1.1", "nope")


def _git_env() -> dict[str, str]:
    names = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return {**os.environ, **names}


@pytest.mark.parametrize(
    ("axis_range", "expected"),
    [
        ("0.1.14..0.1.12", "GOOD 0.1.14 is not older than BAD 0.1.12"),
        ("0.1.12..0.1.12", "GOOD 0.1.12 is not older than BAD 0.1.12"),
        ("0.1.10..0.1.99", "BAD 0.1.99 is not offered by the index"),
        ("0.1.9..0.1.12", "GOOD 0.1.9 is not offered by the index"),
        ("0.1.10-0.1.12", "expected GOOD..BAD"),
    ],
)
def test_bad_ranges_are_one_line_each(aiter_index, tmp_path, axis_range: str, expected: str) -> None:
    matrix = write_matrix(tmp_path / "m.yaml", "127.0.0.1:5000/rocmci-unused", aiter_index.url)
    env = series_env(matrix, tmp_path, AXIS="aiter", RANGE=axis_range)
    line = one_line_error(run_script("bisect", env, timeout=120))
    assert expected in line, line


def test_an_index_that_is_down_is_one_line(tmp_path) -> None:
    down = f"http://127.0.0.1:{aiter_series.free_port()}/simple/"
    matrix = write_matrix(tmp_path / "m.yaml", "127.0.0.1:5000/rocmci-unused", down)
    env = series_env(matrix, tmp_path, AXIS="aiter", RANGE="0.1.10..0.1.14")
    line = one_line_error(run_script("bisect", env, timeout=120))
    assert line == f"cannot read amd-aiter from the index {down}: Connection refused", line


def test_binary_search_bound() -> None:
    assert [bisect.bound(n) for n in (2, 3, 5, 8, 9)] == [2, 3, 4, 5, 5]


# ---------------------------------------------------------------- the bisect, built and validated


@pytest.mark.docker
@pytest.mark.slow
def test_bisect_finds_the_first_bad_release_and_resumes_after_an_interruption(series_matrix, reports, warm_layers, wheelhouse):
    summary = reports / "step-summary.md"
    env = series_env(
        series_matrix,
        reports,
        AXIS="aiter",
        RANGE="0.1.10..0.1.14",
        BAD_IF="verdict",
        WHEELHOUSE=str(wheelhouse),
        GITHUB_STEP_SUMMARY=str(summary),
    )
    workdir = reports / "bisect" / "local-series-aiter"
    log = workdir / "log.jsonl"
    # First run: interrupted (SIGINT, as Ctrl-C or a cancelled job) once both ends are in the log.
    first = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "ci" / "bisect")],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and first.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(1)
    assert first.poll() is None, first.communicate()[0]
    first.send_signal(signal.SIGINT)
    first_output = first.communicate(timeout=300)[0]
    print(first_output)
    assert first.returncode != 0
    assert "run the same command to resume" in first_output
    assert not (workdir / "bisect.json").exists(), "an interrupted bisect must not write a result"
    interrupted_steps = len(log.read_text().splitlines())

    second = run_script("bisect", env)
    print(second.stdout, second.stderr)
    assert second.returncode == 0, second.stderr
    result = bisect.read_result(workdir / "bisect.json")
    assert (result.first_bad, result.last_good) == ("0.1.12", "0.1.11")
    assert any(line.startswith("+ finding aiter.symbol.missing") for line in result.changed), result.changed
    assert result.validations <= bisect.bound(len(result.candidates)) == 4
    assert [v.pin for v in result.steps] == ["0.1.10", "0.1.14", "0.1.12", "0.1.11"]  # both ends, then halving
    reused = [v for v in result.steps if v.from_log]
    assert len(reused) >= interrupted_steps >= 2, "the resumed run must take every logged step from the log"
    assert result.validations_new == len(result.steps) - len(reused)
    for view in result.steps:
        build = view.record.build
        below = build.reused_below(bisect.AITER_LAYER)
        print(
            f"{view.pin}: build {build.status}, {build.cached}/{len(build.layers)} layers from the cache, below aiter reused: {below}"
        )
        assert build.status == "skipped" or below is True, f"{view.pin} rebuilt layers below aiter: {build.layers}"
    assert "first bad aiter pin: 0.1.12 (last good: 0.1.11)" in second.stdout
    assert "first bad aiter pin: 0.1.12" in summary.read_text()
    markdown = (workdir / "bisect.md").read_text()
    assert "aiter.symbol.missing" in markdown and "| 4 |" in markdown


@pytest.mark.docker
@pytest.mark.slow
def test_bisect_refuses_a_range_whose_bad_end_passes(series_matrix, reports, warm_layers, wheelhouse):
    env = series_env(series_matrix, reports, AXIS="aiter", RANGE="0.1.11..0.1.15", WHEELHOUSE=str(wheelhouse))
    done = run_script("bisect", env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "BAD 0.1.15 is good, not bad (verdict pass" in done.stderr.strip().splitlines()[-1]
    assert "nothing to bisect" in done.stderr


# ---------------------------------------------------------------- bump


@pytest.mark.docker
@pytest.mark.slow
def test_bump_proposes_the_newest_release_that_passes_not_the_newest(series_matrix, warm_layers, wheelhouse, tmp_path):
    out = tmp_path / "bump"
    summary = tmp_path / "summary.md"
    env = series_env(series_matrix, tmp_path, WHEELHOUSE=str(wheelhouse), GITHUB_STEP_SUMMARY=str(summary))
    done = run_script("bump", env)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr

    patch = (out / "matrix.patch").read_text()
    assert '-    aiter: {pypi: "0.1.10", index: ' in patch, patch
    assert '+    aiter: {pypi: "0.1.16", index: ' in patch, patch
    assert "torch" not in "".join(line for line in patch.splitlines(True) if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    # The patch applies to the matrix and leaves a valid matrix that pins the proposal.
    applied = tmp_path / "applied"
    applied.mkdir()
    (applied / series_matrix.name).write_text(series_matrix.read_text())
    subprocess.run(["git", "apply", "-p1", str(out / "matrix.patch")], cwd=applied, check=True)
    from rocmci.plan import load_plan

    [entry] = load_plan(applied / series_matrix.name).entries
    assert entry.stack.aiter.pypi == "0.1.16"

    body = (out / "pr-body.md").read_text()
    before = body.split("### Compatibility matrix before", 1)[1].split("###", 1)[0]
    after = body.split("### Compatibility matrix after", 1)[1].split("###", 1)[0]
    assert "aiter 0.1.10" in before and "pass (CPU only" in before
    assert "aiter 0.1.16" in after and "pass (CPU only" in after
    assert "### LayerNorm per GPU" in body and "| series | local | no GPU figure (CPU only) | no GPU figure (CPU only) |" in body
    not_proposed = body.split("### Not proposed", 1)[1]
    assert "aiter 0.1.17: fail" in not_proposed and "aiter.symbol.missing" in not_proposed
    assert "torch: cannot read torch from the index https://download.pytorch.org/whl/cpu" in not_proposed
    assert summary.read_text() == body + "\n" or body in summary.read_text()
    result = json.loads((out / "bump.json").read_text())
    [aiter, _torch] = result["stacks"][0]["proposals"]
    assert [t["pin"] for t in aiter["tried"]] == ["0.1.17", "0.1.16"]


# ---------------------------------------------------------------- matrix, patch and workflow (no builds)


def test_a_pypi_pin_may_name_its_index_and_only_a_pypi_pin(tmp_path) -> None:
    from rocmci.errors import MatrixError
    from rocmci.plan import load_plan

    good = write_matrix(tmp_path / "ok.yaml", "127.0.0.1:5000/x", "http://127.0.0.1:9/simple/")
    [entry] = load_plan(good).entries
    assert entry.build_args["AITER_INDEX_URL"] == "http://127.0.0.1:9/simple/"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text().replace(
            'aiter: {pypi: "0.1.10", index:', "aiter: {git: {repo: https://github.com/ROCm/aiter, ref: v0.1.20}, index:"
        )
    )
    with pytest.raises(MatrixError) as caught:
        load_plan(bad)
    [line] = str(caught.value).splitlines()
    assert line.startswith(f"{bad}:14: stacks.series.aiter: expected index only beside a pypi pin"), line


def test_edit_pin_changes_one_value_in_place_and_keeps_the_rest(tmp_path) -> None:
    from rocmci.bump import edit_pin, unified_patch

    text = write_matrix(tmp_path / "m.yaml", "127.0.0.1:5000/x", "http://127.0.0.1:9/simple/").read_text()
    new = edit_pin(text, "m.yaml", "series", ("aiter", "pypi"), "0.1.10", "0.1.16")
    patch = unified_patch(text, new, "matrix.yaml")
    changed = [line for line in patch.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [
        '-    aiter: {pypi: "0.1.10", index: http://127.0.0.1:9/simple/}',
        '+    aiter: {pypi: "0.1.16", index: http://127.0.0.1:9/simple/}',
    ]
    with pytest.raises(bisect.BisectError, match=r"cannot find '0\.1\.9'"):
        edit_pin(text, "m.yaml", "series", ("aiter", "pypi"), "0.1.9", "0.1.16")
    anchored = text.replace('aiter: {pypi: "0.1.10"', 'aiter: &shared {pypi: "0.1.10"').replace(
        "matrix:\n",
        '  twin:\n    base_image: {name: rocmci/debian, tag: bookworm, local: true}\n    python: "3.11"\n'
        "    torch: {version: 2.13.0, index: https://download.pytorch.org/whl/cpu}\n    aiter: *shared\n    fixture: true\nmatrix:\n",
        1,
    )
    with pytest.raises(bisect.BisectError, match="shared through a YAML anchor with twin: edit it by hand"):
        edit_pin(anchored, "m.yaml", "series", ("aiter", "pypi"), "0.1.10", "0.1.16")


def test_bump_workflow_shape_and_least_privilege() -> None:
    import re

    doc = yaml.safe_load(WORKFLOW.read_text())
    on = doc.get("on", doc.get(True))
    assert set(on) == {"schedule", "workflow_dispatch"}, "no pull_request trigger may reach the runners that build"
    assert doc["permissions"] == {}
    for name, job in doc["jobs"].items():
        expected = {"contents": "write", "pull-requests": "write"} if name == "pull-request" else {"contents": "read"}
        assert job["permissions"] == expected, (name, job["permissions"])
        for step in job["steps"]:
            uses = step.get("uses", "")
            if uses:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), uses
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            assert "${{" not in step.get("run", ""), step.get("run")
    assert doc["jobs"]["pull-request"]["runs-on"] == "ubuntu-latest", "the job with write permissions never runs on a GPU host"
    runs = {name: " ".join(s.get("run", "") for s in job["steps"]) for name, job in doc["jobs"].items()}
    assert "scripts/ci/bump" in runs["bump"] and "scripts/ci/bisect" in runs["bisect"]
    assert "# v7.0.8" in WORKFLOW.read_text() and "ROCMCI_BUMP_TOKEN" in WORKFLOW.read_text()


def _record(
    verdict: str | None, codes: tuple[str, ...] = (), gates: dict[str, bool] | None = None, build: str = "built"
) -> bisect.StepRecord:
    validation = None
    if verdict is not None:
        validation = bisect.ValidationRecord(
            verdict=verdict,
            label=verdict,
            reasons=[f"probe: {code}: ..." for code in codes],
            findings=[bisect.FindingRecord(code=code, severity="error", message="m") for code in codes],
            gates=gates or {},
            seconds=1.0,
            report_dir="r",
        )
    return bisect.StepRecord(
        pin="0.1.12",
        entry_id="e",
        tag="t",
        build=bisect.BuildRecord(status=build, seconds=1.0, detail="pip could not reach the index" if build == "failed" else ""),
        validation=validation,
        finished="2026-12-01T00:00:00+00:00",
    )


def test_what_counts_as_bad_is_chosen_and_unanswerable_steps_are_skips() -> None:
    missing = _record("fail", ("aiter.symbol.missing",))
    assert bisect.classify(missing, "verdict")[0] == "bad"
    assert bisect.classify(missing, "aiter.symbol.missing")[0] == "bad"
    assert bisect.classify(missing, "aiter.version_mismatch")[0] == "good"
    slow = _record("fail", gates={"k_norm.speedup_vs_torch_upcast": False})
    assert bisect.classify(slow, "gate:k_norm.speedup_vs_torch_upcast")[0] == "bad"
    assert bisect.classify(_record("pass"), "gate:k_norm.speedup_vs_torch_upcast") == (
        "skip",
        "gate k_norm.speedup_vs_torch_upcast was not measured (known here: none)",
    )
    assert bisect.classify(_record(None, build="failed"), "verdict") == ("skip", "build failed: pip could not reach the index")
    assert bisect.classify(_record("error"), "verdict")[0] == "skip"
    with pytest.raises(bisect.BisectError, match="--bad-if: expected verdict"):
        bisect.check_bad_if("Not A Code")
    assert bisect.changed_between(_record("pass"), missing)[1].startswith("+ finding aiter.symbol.missing (error)")


def test_a_skipped_pin_moves_the_search_to_its_neighbour() -> None:
    assert bisect._next_probe(0, 8, set()) == 4
    assert bisect._next_probe(0, 8, {4}) == 3
    assert bisect._next_probe(0, 8, {3, 4}) == 5
    assert bisect._next_probe(3, 5, {4}) is None


def test_a_canary_is_an_upstream_branch_head_and_never_a_fork(tmp_path) -> None:
    from rocmci.bump import branch_head, canary_head
    from rocmci.plan import load_plan, variant_entry

    repo = tmp_path / "aiter.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "head"], check=True, env=_git_env())
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert branch_head(f"file://{repo}", "main") == head
    with pytest.raises(bisect.BisectError, match="has no branch 'nope'"):
        branch_head(f"file://{repo}", "nope")
    [entry] = load_plan(write_matrix(tmp_path / "m.yaml", "127.0.0.1:5000/x", "http://127.0.0.1:9/simple/")).entries
    with pytest.raises(bisect.BisectError, match="pins aiter as pypi; a branch head needs a git pin"):
        canary_head(entry, "main")
    real = load_plan(ROOT / "matrix.yaml").select("mi355x")[0]
    fork = real.stack.model_copy(
        update={
            "aiter": real.stack.aiter.model_copy(
                update={"git": real.stack.aiter.git.model_copy(update={"repo": f"file://{repo}"})}
            )
        }
    )
    forked = dataclasses.replace(variant_entry(real), stack=fork)
    with pytest.raises(bisect.BisectError, match=r"is not the upstream aiter repository .*: never a canary of a fork"):
        canary_head(forked, "main")
