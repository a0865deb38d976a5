"""invoke validate: device policy resolution, the checks in the real local image, clean-up on failure and Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rocmci.plan import load_plan
from rocmci.report import verdict_for
from rocmci.validate import RunOptions, container_spec, probe_command, smoke_command, validate_entries
from rocmci.validate.host import Request, assigned_gpus
from tests.helpers import ROOT
from tests.test_host import fake_host


def _bare_dev(tmp_path: Path) -> Path:
    """A /dev without /dev/kfd or render nodes (and no KFD topology in the real /sys here): no GPU to give."""
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    return dev


def test_amd_policy_resolves_devices_and_numeric_groups(tmp_path):
    entry = load_plan().select("mi355x")[0]
    dev, sys_root = fake_host(tmp_path, (90500,))
    spec = container_spec(entry, dev, assigned_gpus(Request(), dev, sys_root).gpus)
    assert [d.split(":")[1] for d in spec.devices] == ["/dev/kfd", "/dev/dri/renderD128"]
    assert all(d.endswith(":rwm") for d in spec.devices)
    assert spec.missing_devices == []
    render_gid = str((dev / "dri" / "renderD128").stat().st_gid)
    assert render_gid in spec.group_add and all(g.isdigit() for g in spec.group_add)
    assert spec.shm_size == "16g" and spec.network_mode == "none"
    assert spec.labels["io.rocmci.role"] == "validate" and spec.labels["io.rocmci.entry"] == entry.id
    assert spec.labels["io.rocmci.devices"] == "/dev/kfd,/dev/dri/renderD128"


def test_missing_gpu_devices_are_named(tmp_path):
    entry = load_plan().select("mi300x")[0]
    spec = container_spec(entry, _bare_dev(tmp_path))
    assert spec.missing_devices == ["/dev/kfd", "/dev/dri/renderD*"]


def test_check_commands_carry_the_pins_and_gates():
    plan = load_plan()
    amd, local = plan.select("mi355x")[0], plan.select("local")[0]
    probe = probe_command(amd)
    assert probe[:3] == ["python", "-P", "/opt/rocmci/checks/probe.py"]
    assert probe[probe.index("--expect-gfx") + 1] == "gfx950" and "--expect-rocm" in probe
    assert probe[probe.index("--expect-aiter") + 1] == "0.1.20"
    smoke = smoke_command(amd, amd.target)
    assert smoke[smoke.index("--peak-bandwidth-gbs") + 1] == "8000.0"
    assert smoke[smoke.index("--gate-min-speedup") + 1] == "2.0"
    assert smoke[smoke.index("--gate-min-ceiling-frac") + 1] == "0.4"
    assert "aiter-ck" in smoke[smoke.index("--impl") + 1]
    assert "--cpu-only" in probe_command(local) and "--cpu-only" in smoke_command(local, local.target)


def _managed_containers(engine, repository: str) -> list:
    """This session's check containers: other sessions may be validating on the same engine at the same time."""
    found = engine.containers.list(all=True, filters={"label": "io.rocmci.role=validate"})
    return [c for c in found if c.attrs["Config"]["Image"].startswith(f"{repository}:")]


@pytest.mark.docker
@pytest.mark.slow
def test_local_image_probe_sees_the_real_no_rocm_failure(engine, built_images, tmp_path):
    plan = built_images.local_plan
    options = RunOptions(repository=built_images.repository, reports_dir=tmp_path)
    [result] = validate_entries(plan, plan.select("local"), options)
    assert result.status == "ok", result
    probe = json.loads((tmp_path / result.entry_id / "probe.json").read_text())
    codes = {f["code"]: f["severity"] for f in probe["findings"]}
    assert codes["aiter.import.no_rocm"] == "expected"
    assert probe["scope"] == "cpu-only" and probe["versions"]["aiter_dist"] == "0.1.7.post2.dev18"
    smoke = json.loads((tmp_path / result.entry_id / "smoke.json").read_text())
    assert smoke["scope"] == "cpu-only" and smoke["status"] == "pass"
    assert any(s["what"] == "impl aiter-ck" for s in smoke["skipped"]), "no aiter kernel may run on the CPU"
    document = json.loads((tmp_path / result.entry_id / "result.json").read_text())
    assert document["schema"] == "rocmci.result/v1" and document["entry"]["id"] == result.entry_id
    verdict = verdict_for(tmp_path / result.entry_id)
    assert verdict.verdict == "pass" and verdict.scope == "cpu-only"
    assert any("no aiter kernel ran" in note for note in verdict.notes)
    assert not _managed_containers(engine, built_images.repository)


@pytest.mark.docker
@pytest.mark.slow
def test_amd_entry_without_gpu_is_never_a_pass(engine, built_images, tmp_path):
    """An AMD target on a host without /dev/kfd: the probe runs without devices, smoke is skipped, verdict not pass.

    The local image stands in for the AMD image (none can be built here): it is retagged as the mi355x entry."""
    plan = load_plan()
    entry = plan.select("mi355x")[0]
    local_ref = built_images.local_plan.select("local")[0].image_ref(built_images.repository)
    engine.images.get(local_ref).tag(f"{built_images.repository}", entry.tag)
    try:
        options = RunOptions(repository=built_images.repository, reports_dir=tmp_path, dev_root=_bare_dev(tmp_path))
        [result] = validate_entries(plan, [entry], options)
    finally:
        engine.images.remove(entry.image_ref(built_images.repository), noprune=True)
    assert result.status == "error" and "no AMD GPU on this host" in result.error
    assert result.smoke.skipped
    verdict = verdict_for(tmp_path / entry.id)
    assert verdict.verdict in ("error", "fail") and not verdict.passed
    assert not _managed_containers(engine, built_images.repository)


@pytest.mark.docker
@pytest.mark.slow
def test_ctrl_c_removes_the_container_and_leaves_no_result(engine, built_images, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    script = (
        "import sys; from pathlib import Path; from rocmci.plan import load_plan; from rocmci.validate import RunOptions, validate_entries;"
        f"plan = load_plan(); validate_entries(plan, plan.select('local'), RunOptions({built_images.repository!r}, Path({str(tmp_path)!r})))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        seen.append(line)
        if "probing" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    assert _managed_containers(engine, built_images.repository), "the check container should be running: " + "".join(seen)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    assert process.returncode != 0
    assert not _managed_containers(engine, built_images.repository)
    assert not list(tmp_path.glob("*/result.json")), "an interrupted run must not leave a result"
    assert not list(tmp_path.glob(".*")), "no temporary result directory may be left"


@pytest.mark.docker
@pytest.mark.slow
def test_containers_of_two_jobs_see_only_their_own_render_node(engine, built_images, tmp_path):
    """Real containers on a fake device tree (render nodes are links to /dev/null, a real character device): the job
    given renderD136 sees exactly /dev/kfd and /dev/dri/renderD136 inside, the other job only its renderD184."""
    from rocmci.validate.container import check_container

    dev, sys_root = fake_host(tmp_path, (90402,) * 8)
    entry = load_plan().select("mi300x")[0]
    local_ref = built_images.local_plan.select("local")[0].image_ref(built_images.repository)
    seen = {}
    for node in ("renderD136", "renderD184"):
        gpus = assigned_gpus(Request((node,), "--render-nodes"), dev, sys_root).gpus
        with check_container(local_ref, container_spec(entry, dev, gpus)) as container:
            code, out = container.exec_run(["sh", "-c", "ls /dev/dri; test -c /dev/kfd && echo kfd"])
        assert code == 0, out
        seen[node] = out.decode().split()
    assert seen == {"renderD136": ["renderD136", "kfd"], "renderD184": ["renderD184", "kfd"]}
    assert not _managed_containers(engine, built_images.repository)


@pytest.mark.docker
@pytest.mark.slow
def test_parallel_validates_real_entries_at_once(engine, built_images, tmp_path, capsys):
    """`--parallel 3` on the real engine: the local entry and the two fixture entries run at the same time, every
    progress line whole and prefixed by its entry, each result written, and the summary table at the end."""
    from rocmci.validate import summary

    entries = built_images.local_plan.select("local") + list(built_images.fixture_plan.entries)
    assert len(entries) == 3
    options = RunOptions(repository=built_images.repository, reports_dir=tmp_path, parallel=3)
    results = validate_entries(built_images.local_plan, entries, options)
    assert [r.entry_id for r in results] == [e.id for e in entries]
    assert [r.status for r in results] == ["ok", "ok", "checks failed"]  # fixture-bad's aiter fails the smoke test
    spans = []
    for result in results:
        document = json.loads((tmp_path / result.entry_id / "result.json").read_text())
        spans.append((document["started"], document["finished"]))
    assert max(start for start, _ in spans) < min(end for _, end in spans), f"the entries did not overlap: {spans}"
    out = capsys.readouterr().out.splitlines()
    assert any("[parallel" in line and "up to 3 entries at once" in line for line in out)
    ids = {e.id for e in entries}
    for line in out:
        assert any(f"[{entry_id}" in line for entry_id in ids) or "[parallel" in line, line
    table = summary(results)
    assert table.splitlines()[0].split() == ["entry", "gpus", "probe", "smoke", "status", "detail"]
    assert not _managed_containers(engine, built_images.repository)


def _push(engine, repository: str, tag: str) -> str:
    """Push through the engine; the digest the registry now gives the tag."""
    for line in engine.images.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    from rocmci.oci import client_for

    client, name = client_for(repository)
    return client.head_manifest(name, tag).digest


def _invoke_validate_pull(reports: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invoke", "validate", "--gpu", "local", "--pull", "--reports", str(reports)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_validate_pull_validates_the_recorded_digest_and_refuses_a_moved_tag(engine, registry, built_images, tmp_path):
    """`invoke validate --pull` on the real registry and engine: the image the build record names is pulled by digest
    and validated (result.json names that digest); after the tag is pushed again with other content, the run is
    refused before anything runs, and the earlier result is gone."""
    import uuid

    from rocmci.contracts import BuildRecord

    entry = built_images.local_plan.select("local")[0]
    local = engine.images.get(entry.image_ref(built_images.repository))
    staging = f"{registry}/rocmci-staging-test-{uuid.uuid4().hex[:8]}"
    local.tag(staging, entry.tag)
    digest = _push(engine, staging, entry.tag)
    engine.images.remove(f"{staging}:{entry.tag}", noprune=True)  # the runner has no copy under the staging name
    reports = tmp_path / "reports"
    (reports / "builds").mkdir(parents=True)
    record = BuildRecord(
        build_id=entry.build_id,
        entries=[entry.id],
        reference=f"{staging}:{entry.tag}",
        digest=digest,
        image_id=local.id,
        pushed=True,
        finished="2026-12-02T01:00:00+00:00",
    )
    (reports / "builds" / f"{entry.build_id}.json").write_text(record.to_json())
    try:
        run = _invoke_validate_pull(reports)
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"pulling: {staging}@{digest}" in run.stdout
        document = json.loads((reports / entry.id / "result.json").read_text())
        assert document["image"]["ref"] == f"{staging}@{digest}" and document["image"]["digest"] == digest
        assert verdict_for(reports / entry.id).verdict == "pass"

        dockerfile = f"FROM {staging}@{digest}\nLABEL io.rocmci.test-repush={uuid.uuid4().hex}\n".encode()
        engine.images.build(fileobj=io.BytesIO(dockerfile), tag=f"{staging}:{entry.tag}", rm=True)
        moved = _push(engine, staging, entry.tag)
        assert moved != digest
        refused = _invoke_validate_pull(reports)
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        assert f"{staging}:{entry.tag}: the registry has {moved}, but the build recorded {digest}" in refused.stderr
        assert "refusing to validate an image that is not the one built" in refused.stderr
        assert not (reports / entry.id).exists(), "the earlier result must not stand in for a refused run"
    finally:
        for ref in (f"{staging}@{digest}", f"{staging}:{entry.tag}"):
            with contextlib.suppress(Exception):
                engine.images.remove(ref, noprune=True)


def test_validate_pull_without_a_usable_build_record_is_one_line(tmp_path):
    entry = load_plan().select("local")[0]
    reports = tmp_path / "reports"
    (reports / entry.id).mkdir(parents=True)
    (reports / entry.id / "result.json").write_text("{}")  # an earlier result: it must not outlive a refused run
    missing = _invoke_validate_pull(reports)
    record = reports / "builds" / f"{entry.build_id}.json"
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip()
        == f"{record}: no build record: run `invoke build --push` for this entry first (it writes the record)"
    )
    assert not (reports / entry.id).exists()
    record.parent.mkdir()
    record.write_text(
        json.dumps(
            {
                "schema": "rocmci.build/v1",
                "build_id": entry.build_id,
                "entries": [entry.id],
                "reference": f"127.0.0.1:5000/x:{entry.tag}",
                "digest": "sha256:nothex",
                "image_id": "sha256:" + "0" * 64,
                "pushed": True,
                "finished": "2026-12-02T01:00:00+00:00",
            }
        )
    )
    bad = _invoke_validate_pull(reports)
    assert bad.returncode != 0 and bad.stderr.strip().startswith(f"{record}: digest: String should match pattern"), bad.stderr
