"""`invoke check --image` on images built here outside rocmci, from plain Dockerfiles, on the real engine and registry.

The main image is what a team's own image looks like to rocmci: torch from the offline wheelhouse, the aiter test double
installed with pip, no rocmci label, a broken `checks/` copy where a rocmci image keeps its own, and sglang's trap: the
WORKDIR holds an `aiter` source tree and PYTHONPATH ends in `:` (an empty entry: the working directory is on sys.path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, FixtureWheels

PLAIN_DOCKERFILE = """\
FROM rocmci/debian:bookworm
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels torch==2.13.0 "amd-aiter==0.1.20+rocmcifixture" \\
 && rm -rf /tmp/wheels
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/team-plugins:
{trap}
"""
# The image's own copy of checks/ where a rocmci image keeps it (broken: it must never run), and a shadowing aiter
# source tree in the WORKDIR: reached through PYTHONPATH's empty entry whenever a check runs from the WORKDIR.
TRAP = """\
RUN mkdir -p /opt/rocmci/checks /sgl-workspace/aiter \\
 && for f in probe.py smoke_layernorm.py; do echo 'raise SystemExit("IMAGE-OWN-CHECKS-RAN")' > /opt/rocmci/checks/$f; done \\
 && echo 'raise ImportError("SHADOW: the WORKDIR aiter source tree was imported")' > /sgl-workspace/aiter/__init__.py
WORKDIR /sgl-workspace
ENTRYPOINT ["python3", "-c", "raise SystemExit('IMAGE-ENTRYPOINT-RAN: a server would start here')"]"""
PY310 = Path("/root/.pyenv/versions/3.10.13")  # this machine kind's pyenv build (RUNPATH: its own lib/)
PY310_DOCKERFILE = """\
FROM rocmci/debian:bookworm
COPY py310/ {prefix}/
COPY aiter/ {prefix}/lib/python3.10/site-packages/aiter/
ENV PATH={prefix}/bin:$PATH PYTHONPATH=/opt/team-plugins:
{trap}
"""
PY310_SKIP = ("test", "site-packages", "config-3.10-x86_64-linux-gnu", "idlelib", "tkinter", "ensurepip", "lib2to3", "include")


def _build(engine, context: Path, tag: str) -> str:
    tar_path = context.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(context, arcname=".")
    with tar_path.open("rb") as fileobj:
        engine.images.build(fileobj=fileobj, custom_context=True, tag=tag, network_mode="none", rm=True, forcerm=True)
    tar_path.unlink()
    return tag


@pytest.fixture(scope="module")
def plain_image(engine, registry: str, wheelhouse: Path, fixture_wheels: FixtureWheels, tmp_path_factory):
    """Built with the engine from a plain Dockerfile (no rocmci build), pushed to the real registry."""
    context = tmp_path_factory.mktemp("plain") / "context"
    (context / "wheels").mkdir(parents=True)
    for wheel in [*wheelhouse.glob("*.whl"), fixture_wheels.good]:
        if not wheel.name.startswith(("amd_aiter-0.1.7", "pandas", "numpy")):
            _place(wheel.resolve(), context / "wheels" / wheel.name)
    (context / "Dockerfile").write_text(PLAIN_DOCKERFILE.format(trap=TRAP))
    ref = f"{registry}/rocmci-check-{uuid.uuid4().hex[:8]}:plain"
    _build(engine, context, ref)
    engine.images.push(ref)
    yield ref
    engine.images.remove(ref, force=True)


def _place(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system
        shutil.copyfile(source, dest)


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real task, as a user runs it from the clone."""
    command = [str(Path(sys.executable).parent / "invoke"), "check", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


def compat_entry(reports: Path) -> dict:
    return json.loads((reports / "compat.json").read_text())["entries"][0]


def test_an_image_with_no_expectations_is_judged_on_its_checks_and_says_what_it_found(plain_image: str, engine, tmp_path):
    reports = tmp_path / "reports"
    done = check("--image", plain_image, "--gpu", "local", "--reports", str(reports))
    assert done.returncode == 0, done.stdout + done.stderr
    record = compat_entry(reports)
    entry_dir = reports / record["entry"]["id"]
    assert {p.name for p in reports.iterdir()} >= {"compat.json", "compat.md", "junit.xml", "index.html", entry_dir.name}
    assert {p.name for p in entry_dir.iterdir()} >= {"result.json", "probe.json", "smoke.json", "probe.log", "smoke.log"}
    assert record["verdict"] == "pass" and record["scope"] == "cpu-only"
    assert record["entry"]["torch"] is None and record["entry"]["aiter"] is None  # nothing was claimed
    found = "not pinned, so not compared: found torch 2.13.0+cpu, aiter 0.1.20+rocmcifixture"
    assert any(note.startswith(found) for note in record["notes"]), record["notes"]
    assert found in (reports / "compat.md").read_text() and found in done.stdout
    # rocmci's checks ran (from the read-only mount), never the image's broken copy
    for step in ("probe", "smoke"):
        log = (entry_dir / f"{step}.log").read_text()
        assert log.startswith(f"python3 -P /rocmci/checks/{step if step == 'probe' else 'smoke_layernorm'}.py")
        assert "IMAGE-OWN-CHECKS-RAN" not in log
    probe = json.loads((entry_dir / "probe.json").read_text())
    assert probe["versions"]["aiter_import"] == "0.1.20+rocmcifixture"
    assert "aiter.import.shadowed" not in {f["code"] for f in probe["findings"]}
    # the trap is real: the same interpreter in the image's own WORKDIR imports the shadowing tree
    where = ["-P", "-c", "import importlib.util as u; print(u.find_spec('aiter').origin)"]
    shadow = engine.containers.run(plain_image, where, entrypoint=["python3"], network_mode="none", remove=True)
    assert shadow.decode().strip() == "/sgl-workspace/aiter/__init__.py"


def test_expectations_that_match_pass_and_the_report_is_attached_to_the_digest(plain_image: str, registry: str, tmp_path):
    from rocmci import oci

    reports = tmp_path / "reports"
    done = check(
        "--image", plain_image, "--gpu", "local", "--reports", str(reports),
        "--expect-torch", "2.13.0", "--expect-aiter", "0.1.20+rocmcifixture", "--attach",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    record = compat_entry(reports)
    assert record["verdict"] == "pass" and record["entry"]["torch"] == "2.13.0"
    assert not any(note.startswith("not pinned") for note in record["notes"])
    repository = plain_image.rsplit(":", 1)[0]
    client, name = oci.client_for(repository)
    digest = client.get_manifest(name, "plain").digest
    assert record["image"]["digest"] == digest and record["subject"]["digest"] == digest
    artifacts = client.referrers(name, digest, oci.REPORT_ARTIFACT_TYPE)
    assert len(artifacts) == 1
    attached = oci.read_report(client, name, digest, artifacts[0])
    assert attached.verdict == "pass" and attached.entry["external"] is True and attached.entry["image"] == plain_image
    assert f"{repository}@{digest}" in done.stdout


def test_expectations_that_do_not_match_fail_through_the_workflow_script(plain_image: str, tmp_path):
    """scripts/ci/check-image (validate-image.yml's step) with the environment GitHub Actions gives it."""
    reports, output, summary = tmp_path / "reports", tmp_path / "output", tmp_path / "summary"
    env = {
        "IMAGE": plain_image,
        "GPU": "local",
        "EXPECT_TORCH": "2.12.0",
        "EXPECT_AITER": "0.1.19",
        "REPORTS": str(reports),
        "INVOKE": str(Path(sys.executable).parent / "invoke"),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(tmp_path),
    }
    script = ROOT / "scripts" / "ci" / "check-image"
    done = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ, **env}
    )
    assert done.returncode == 1, done.stdout + done.stderr
    record = compat_entry(reports)
    assert record["verdict"] == "fail"
    reasons = " | ".join(record["reasons"])
    assert "torch.version_mismatch" in reasons and "aiter.version_mismatch" in reasons
    assert "found torch 2.13.0+cpu but the entry pins 2.12.0" in reasons
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert outputs == {"verdict": "fail", "entry": record["entry"]["id"]}
    assert "| external | fail" in summary.read_text()


def test_an_amd_target_without_its_gpu_never_passes(plain_image: str, tmp_path):
    reports = tmp_path / "reports"
    done = check("--image", plain_image, "--gpu", "mi355x", "--reports", str(reports), "--expect-rocm", "7.2")
    assert done.returncode == 1
    record = compat_entry(reports)
    assert record["verdict"] in ("fail", "error") and record["steps"]["smoke"]["skipped"]
    probe = json.loads((reports / record["entry"]["id"] / "probe.json").read_text())
    assert probe["expect"]["rocm_version"] == "7.2" and "torch.not_rocm" in {f["code"] for f in probe["findings"]}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--image", "127.0.0.1:5000/rocmci-check-missing-{u}:nope"), {}, "not in the local Docker engine, and pulling it failed"),
        (("--image", "Not A Reference"), {}, "--image: 'Not A Reference' is not an image reference"),
        (("--image", "x:1", "--expect-torch", "two"), {}, "--expect-torch: expected a torch version"),
        (("--image", "x:1", "--expect-rocm", "7.2"), {}, "--expect-rocm: GPU target local is a CPU target"),
        (("--image", "x:1", "--attach"), {}, "--attach: x:1 names no registry host"),
        (("--image", "x:1",), {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "Docker engine not reachable at unix:///nonexistent"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(engine, args: tuple[str, ...], env: dict, message: str, tmp_path):
    reports = tmp_path / "reports"
    done = check(*[a.format(u=uuid.uuid4().hex[:8]) for a in args], "--gpu", "local", "--reports", str(reports), env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not reports.exists()


def test_rocm_version_expectation_in_the_probe(tmp_path):
    envs = ROOT / "tests" / "data" / "probe_envs"
    base = [sys.executable, "-S", "-P", str(ROOT / "checks" / "probe.py"), "--json", "--skip-first-call"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(envs / "torch_rocm"), "FAKE_GPU_ARCH": "gfx942"}
    for wanted, mismatch in (("7.2", False), ("7.1", True), ("7", False)):
        done = subprocess.run([*base, "--expect-rocm-version", wanted], env=env, capture_output=True, text=True, check=False)
        codes = {f["code"] for f in json.loads(done.stdout)["findings"]}
        assert ("torch.rocm_version_mismatch" in codes) == mismatch, (wanted, codes)


def test_python_310_runs_the_checks_without_P_and_unshadowed(engine, tmp_path_factory):
    """A real Python 3.10 (no -P) in an image with the same WORKDIR/PYTHONPATH trap. torch has no cp310 wheel here, so
    the probe ends at torch.missing; what this shows is the interpreter choice, the command line and the import path."""
    from rocmci.plan import load_plan
    from rocmci.validate.container import check_container
    from rocmci.validate.external import (
        Expectations,
        ExternalEntry,
        ImageReference,
        check_spec,
        find_interpreter,
        probe_command,
    )

    if not (PY310 / "bin" / "python3.10").exists():
        pytest.skip(f"no Python 3.10 build at {PY310} on this host to put in an image")
    context = tmp_path_factory.mktemp("py310") / "context"
    shutil.copytree(PY310, context / "py310", symlinks=True, ignore=shutil.ignore_patterns(*PY310_SKIP))
    (context / "aiter").mkdir()
    (context / "aiter" / "__init__.py").write_bytes((ROOT / "tests/fixtures/aiter_double/aiter/__init__.py").read_bytes())
    (context / "Dockerfile").write_text(PY310_DOCKERFILE.format(prefix=PY310, trap=TRAP))
    ref = _build(engine, context, f"rocmci-check-py310-{uuid.uuid4().hex[:8]}:test")
    try:
        plan = load_plan()
        reference = ImageReference.parse(ref)
        entry = ExternalEntry("check-py310", "local", plan.matrix.targets["local"], plan.matrix.gates, reference, Expectations())
        with check_container(ref, check_spec(entry, Path("/dev"))) as container:
            python = find_interpreter(container)
            assert python.version == (3, 10) and python.argv() == ["python3"]  # no -P: 3.10 exits 2 on it
            where = ["python3", "-c", "import importlib.util as u; print(u.find_spec('aiter').origin)"]
            code, out = container.exec_run(where)
            assert code == 0 and out.decode().strip() == f"{PY310}/lib/python3.10/site-packages/aiter/__init__.py"
            code, out = container.exec_run(where, workdir="/sgl-workspace")  # the trap, where the image's WORKDIR is
            assert out.decode().strip() == "/sgl-workspace/aiter/__init__.py"
            code, out = container.exec_run(probe_command(entry, python), demux=True)
            probe = json.loads(out[0])
            assert code == 1 and probe["versions"]["python"].startswith("3.10.")
            assert {f["code"] for f in probe["findings"]} >= {"torch.missing"}
    finally:
        engine.images.remove(ref, force=True)


def test_the_readme_caller_workflow_fits_the_reusable_workflow(tmp_path):
    """The README's example caller: actionlint-clean, and every input and secret it passes is one validate-image.yml
    declares, with every required input given."""
    import re

    import yaml

    from tests.test_workflows import actionlint, triggers

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Validate your own image from another repository.**") :]
    caller_text = re.search(r"```yml\n(.*?)```", section, re.DOTALL)[1]
    caller = yaml.safe_load(caller_text)
    called = triggers(yaml.safe_load((ROOT / ".github" / "workflows" / "validate-image.yml").read_text()))["workflow_call"]
    job = caller["jobs"]["rocmci"]
    assert job["uses"].split("@")[0].endswith("/.github/workflows/validate-image.yml")
    assert job["uses"].split("@")[1] == job["with"]["rocmci-ref"]
    assert set(job["with"]) <= set(called["inputs"]) and set(job["secrets"]) <= set(called["secrets"])
    assert {name for name, spec in called["inputs"].items() if spec.get("required")} <= set(job["with"])
    assert isinstance(json.loads(job["with"]["runs-on"]), list)
    path = tmp_path / ".github" / "workflows" / "caller.yml"
    path.parent.mkdir(parents=True)
    path.write_text(caller_text)
    code, findings = actionlint([path])
    assert findings == [] and code == 0, findings
