"""`invoke doctor`: each check against temporary /dev, /sys and /etc/group trees and canned command output, the
real machine (no AMD GPU here: it must say exactly what is missing and exit non-zero), and the in-image torch probe
against the real engine with a stand-in `python`."""

from __future__ import annotations

import json
import os
import tarfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rocmci.runner.checks import Check, Status
from rocmci.runner.doctor import DoctorInputs, EngineInfo, check_disk, check_engine, doctor_command, run_doctor
from rocmci.runner.gpu_checks import check_image_torch, parse_amd_smi_list, parse_rocminfo
from rocmci.validate.host import HostGpus, gfx_from_target_version
from tests.helpers import require_module, unavailable
from tests.test_host import fake_host

ROCMINFO_MI300X_X2 = """\
ROCk module version 6.8.5 is loaded
=====================
HSA System Attributes
=====================
Runtime Version:         1.14
==========
HSA Agents
==========
*******
Agent 1
*******
  Name:                    AMD EPYC 9654 96-Core Processor
  Uuid:                    CPU-XX
  Marketing Name:          AMD EPYC 9654 96-Core Processor
  Vendor Name:             CPU
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    gfx942
  Uuid:                    GPU-5a3c8f1e2b7d4a10
  Marketing Name:          AMD Instinct MI300X
  Vendor Name:             AMD
  Device Type:             GPU
  ISA Info:
    ISA 1
      Name:                    amdgcn-amd-amdhsa--gfx942:sramecc+:xnack-
*******
Agent 3
*******
  Name:                    gfx942
  Marketing Name:          AMD Instinct MI300X
  Device Type:             GPU
  ISA Info:
    ISA 1
      Name:                    amdgcn-amd-amdhsa--gfx942:sramecc+:xnack-
*** Done ***
"""


@dataclass
class FakePolicy:
    devices: list[str] = field(default_factory=lambda: ["/dev/kfd", "/dev/dri"])
    group_add: list[str] = field(default_factory=lambda: ["video", "render"])
    shm_size: str = "16g"
    network: str = "none"


@dataclass
class FakeTarget:
    gfx: str | None = "gfx942"
    kind: str = "amd"
    device_policy: FakePolicy = field(default_factory=FakePolicy)


class FakeEngine:
    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24", "ApiVersion": "1.41"}

    def info(self) -> dict[str, str]:
        return {"DockerRootDir": "/"}


def unreachable() -> Any:
    raise ConnectionError("Docker engine not reachable at unix:///nope.sock: connection refused")


def fake_tools(rocminfo: str | None = ROCMINFO_MI300X_X2, amd_smi_count: int | None = 2, buildx: bool = True):
    """(runner, which) answering like a host with these tools installed."""

    def which(name: str) -> str | None:
        present = {"docker": buildx, "rocminfo": rocminfo is not None, "amd-smi": amd_smi_count is not None}
        return f"/usr/bin/{name}" if present.get(name) else None

    def runner(argv: Sequence[str]) -> tuple[int, str]:
        tool = Path(argv[0]).name
        if tool == "docker":
            return (0, "github.com/docker/buildx v0.17.1\n") if buildx else (1, "docker: 'buildx' is not a docker command.")
        if tool == "rocminfo" and rocminfo is not None:
            return 0, rocminfo
        if tool == "amd-smi" and amd_smi_count is not None:
            return 0, json.dumps([{"gpu": i, "bdf": f"0000:{i:02x}:00.0"} for i in range(amd_smi_count)])
        return 127, f"{tool}: not found"

    return runner, which


MI300X, MI325X, MI350X, MI355X = 0x74A1, 0x74A5, 0x75A0, 0x75A3  # PCI device ids (pci.ids)


def gpu_host(root: Path, gfx_versions: Sequence[int] = (90402, 90402), device_id: int = MI300X) -> DoctorInputs:
    """A /dev, /sys and /etc/group like an AMD runner's, under `root` (tests/test_host.py: fake_host)."""
    dev, sys_root = fake_host(root, gfx_versions, device_id)
    etc_group = root / "group"
    etc_group.write_text(f"root:x:0:\nvideo:x:44:\nrender:x:{os.getgid()}:\n")
    runner, which = fake_tools()
    return DoctorInputs(dev, sys_root, etc_group, runner, which, client_factory=FakeEngine)


def bare_host(root: Path) -> DoctorInputs:
    """This CI machine's situation: no driver, no ROCm tools, engine up."""
    (root / "dev").mkdir()
    (root / "sys").mkdir()
    (root / "group").write_text("root:x:0:\nvideo:x:44:\n")
    runner, which = fake_tools(rocminfo=None, amd_smi_count=None, buildx=False)
    return DoctorInputs(root / "dev", root / "sys", root / "group", runner, which, client_factory=FakeEngine)


def by_name(checks: Sequence[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


# ---------------------------------------------------------------- parsers


def test_parse_rocminfo_counts_gpu_agents_only() -> None:
    assert parse_rocminfo(ROCMINFO_MI300X_X2) == HostGpus("rocminfo", 2, ("gfx942", "gfx942"))
    assert parse_rocminfo("ROCk module is NOT loaded, possibly no GPU devices\n").count == 0


@pytest.mark.parametrize(("version", "gfx"), [(90402, "gfx942"), (90500, "gfx950"), (90010, "gfx90a"), (110000, "gfx1100")])
def test_gfx_from_target_version(version: int, gfx: str) -> None:
    assert gfx_from_target_version(version) == gfx


def test_parse_amd_smi_list() -> None:
    assert parse_amd_smi_list('[{"gpu": 0}, {"gpu": 1}]') == 2
    assert parse_amd_smi_list('{"gpu_list": [{"gpu": 0}]}') == 1
    assert parse_amd_smi_list("not json") is None


# ---------------------------------------------------------------- whole reports on fake hosts


def test_ready_gpu_runner(tmp_path: Path) -> None:
    report = run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=gpu_host(tmp_path))
    checks = by_name(report.checks)
    assert report.can_validate and report.exit_code == 0, report.table()
    names = ("engine", "buildx", "driver", "kfd", "render-nodes", "groups", "kfd-topology", "gpu-model", "rocminfo", "amd-smi")
    for name in (*names, "disk"):
        assert checks[name].status is Status.OK, checks[name]
    assert "2 GPU(s): gfx942, gfx942" in checks["rocminfo"].detail
    assert checks["gpu-model"].detail == "2 x AMD Instinct MI300X (0x74a1)"
    assert f"render={os.getgid()}" in checks["groups"].detail
    assert checks["image-torch"].status is Status.SKIP
    assignment = checks["assignment"]  # two GPUs and none assigned: validate refuses until the owner sets one
    assert assignment.status is Status.WARN and "2 GPUs, none assigned" in assignment.detail
    assert "ROCMCI_RENDER_NODES=renderD128" in assignment.fix and "--parallel" in assignment.fix


def test_doctor_shows_the_assignment(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path, (90402,) * 4)
    inputs.env = {"ROCMCI_RENDER_NODES": "renderD152"}
    assignment = by_name(run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs).checks)["assignment"]
    assert assignment.status is Status.OK
    assert assignment.detail == "renderD152 (KFD node 4, gfx942) (ROCMCI_RENDER_NODES)"
    inputs.render_nodes = "renderD136,renderD144"  # the option wins over the variable
    assignment = by_name(run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs).checks)["assignment"]
    assert (
        assignment.detail.startswith("renderD136 (KFD node 2, gfx942), renderD144 (KFD node 3")
        and "--render-nodes" in assignment.detail
    )


def test_a_bad_assignment_fails(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path)
    inputs.render_nodes = "renderD129"  # counted from renderD128, but the second GPU is renderD136
    report = run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs)
    assignment = by_name(report.checks)["assignment"]
    assert assignment.status is Status.FAIL and report.exit_code == 1
    assert "renderD129 is not the render node of any GPU in the KFD topology" in assignment.detail
    assert "renderD136 (KFD node 2, gfx942)" in assignment.detail


def test_one_gpu_host_assigns_its_gpu(tmp_path: Path) -> None:
    checks = by_name(run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=gpu_host(tmp_path, (90402,))).checks)
    assert checks["assignment"].status is Status.OK
    assert checks["assignment"].detail == "renderD128 (KFD node 1, gfx942) (the host's only GPU)"


def test_wrong_gfx_on_runner_fails_with_label_fix(tmp_path: Path) -> None:
    report = run_doctor("mi355x", FakeTarget(gfx="gfx950"), min_free_gb=0, inputs=gpu_host(tmp_path))
    checks = by_name(report.checks)
    assert report.exit_code == 1
    assert checks["kfd-topology"].status is Status.FAIL and "gfx950" in checks["kfd-topology"].detail
    assert "labels" in checks["kfd-topology"].fix
    assert checks["gpu-model"].status is Status.SKIP  # the gfx already says it: one failure for one cause
    assert checks["rocminfo"].status is Status.OK  # a cross-check of sysfs, which it agrees with


def test_amd_smi_disagreeing_is_a_warning(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path)
    inputs.runner, inputs.which = fake_tools(amd_smi_count=1)
    checks = by_name(run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs).checks)
    assert checks["amd-smi"].status is Status.WARN and "the kfd topology has 2" in checks["amd-smi"].detail


def test_render_node_gid_mismatch_suggests_numeric_group(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path)
    inputs.etc_group.write_text("video:x:44:\nrender:x:4242:\n")
    check = by_name(run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs).checks)["groups"]
    assert check.status is Status.WARN and f"--group-add {os.getgid()}" in check.fix


def test_bare_machine_says_what_is_missing(tmp_path: Path) -> None:
    report = run_doctor("mi355x", FakeTarget(gfx="gfx950"), min_free_gb=0, inputs=bare_host(tmp_path))
    checks = by_name(report.checks)
    failed = [c.name for c in report.checks if c.status is Status.FAIL]
    assert failed == ["driver"], "one missing driver is one root cause, not one failure per symptom"
    assert "no render node and no GPU" in checks["driver"].detail  # what follows from it
    for name in (
        "kfd",
        "render-nodes",
        "groups",
        "kfd-topology",
        "gpu-model",
        "assignment",
        "rocminfo",
        "amd-smi",
        "image-torch",
    ):
        assert checks[name].status is Status.SKIP, checks[name]
    assert "see driver" in checks["kfd"].detail
    assert checks["engine"].status is Status.OK and checks["disk"].status is Status.OK
    assert checks["buildx"].status is Status.WARN  # info only: never blocks
    assert report.exit_code == 1
    table = report.table()
    assert "modprobe amdgpu" in table and "NOT READY" in table and "(1 failing check(s))" in table
    assert "apt-get install rocminfo" not in table
    assert all(c.fix for c in report.checks if c.status is Status.FAIL), "every failure names a fix"


def test_no_rocminfo_with_good_sysfs_passes(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path)
    inputs.runner, inputs.which = fake_tools(rocminfo=None, amd_smi_count=None)
    report = run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs)
    checks = by_name(report.checks)
    assert report.exit_code == 0, report.table()
    assert checks["rocminfo"].status is Status.SKIP and "optional" in checks["rocminfo"].detail
    assert checks["kfd-topology"].detail == "2 GPU(s): gfx942, gfx942"
    assert "apt-get" not in report.table()


@pytest.mark.parametrize(
    ("label", "gfx", "version", "device_id", "found", "wanted"),
    [
        ("mi300x", "gfx942", 90402, MI325X, "AMD Instinct MI325X (0x74a5)", "AMD Instinct MI300X"),
        ("mi355x", "gfx950", 90500, MI350X, "AMD Instinct MI350X (0x75a0)", "AMD Instinct MI355X"),
        ("mi325x-8gpu", "gfx942", 90402, MI300X, "AMD Instinct MI300X (0x74a1)", "AMD Instinct MI325X"),
    ],
)
def test_other_model_of_the_same_gfx_fails_naming_both(
    tmp_path: Path, label: str, gfx: str, version: int, device_id: int, found: str, wanted: str
) -> None:
    report = run_doctor(label, FakeTarget(gfx=gfx), min_free_gb=0, inputs=gpu_host(tmp_path, (version,) * 8, device_id))
    checks = by_name(report.checks)
    assert checks["kfd-topology"].status is Status.OK  # the gfx alone would have passed
    model = checks["gpu-model"]
    assert model.status is Status.FAIL and report.exit_code == 1
    assert model.detail == f"this runner has 8 x {found}, but target {label} is {wanted}"
    assert f"not {label}" in model.fix


def test_unknown_device_id_or_unknown_target_model(tmp_path: Path) -> None:
    unknown = run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=gpu_host(tmp_path / "a", device_id=0x1234))
    check = by_name(unknown.checks)["gpu-model"]
    assert check.status is Status.WARN and "unknown device 0x1234" in check.detail and "gpus.yaml" in check.fix
    custom = run_doctor("lab-box", FakeTarget(), min_free_gb=0, inputs=gpu_host(tmp_path / "b"))
    check = by_name(custom.checks)["gpu-model"]
    assert check.status is Status.SKIP and "names no model" in check.detail and custom.exit_code == 0


def test_rocminfo_disagreeing_with_sysfs_is_a_warning(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path, (90402, 90402, 90402))
    checks = by_name(run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs).checks)
    assert checks["rocminfo"].status is Status.WARN and "the kfd topology has 3" in checks["rocminfo"].detail


def test_driver_loaded_but_kfd_not_passed_into_the_container(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path)
    (inputs.dev_root / "kfd").unlink()
    checks = by_name(run_doctor("mi300x", FakeTarget(), min_free_gb=0, inputs=inputs).checks)
    assert checks["driver"].status is Status.OK
    assert checks["kfd"].status is Status.FAIL and "--device=/dev/kfd" in checks["kfd"].fix


def test_cpu_target_needs_no_gpu(tmp_path: Path) -> None:
    target = FakeTarget(gfx=None, kind="cpu", device_policy=FakePolicy([], [], "2g"))
    report = run_doctor("local", target, min_free_gb=0, inputs=bare_host(tmp_path))
    assert report.exit_code == 0, report.table()
    assert {c.name for c in report.checks if c.status is Status.SKIP} >= {"kfd", "render-nodes", "groups"}


def test_engine_unreachable_fails(tmp_path: Path) -> None:
    inputs = gpu_host(tmp_path)
    inputs.client_factory = unreachable
    report = run_doctor("mi300x", FakeTarget(), image="some/image:tag", min_free_gb=0, inputs=inputs)
    checks = by_name(report.checks)
    assert checks["engine"].status is Status.FAIL and "DOCKER_HOST" in checks["engine"].fix
    assert checks["image-torch"].status is Status.SKIP  # cannot probe without an engine
    assert report.exit_code == 1
    assert check_engine(EngineInfo(False, error="boom")).status is Status.FAIL


def test_disk_threshold(tmp_path: Path) -> None:
    assert check_disk(tmp_path, 0).status is Status.OK
    low = check_disk(tmp_path / "not" / "there", 1e9)
    assert low.status is Status.FAIL and "invoke clean" in low.fix


def test_image_torch_agreement() -> None:
    host = HostGpus("rocminfo", 2, ("gfx942", "gfx942"))

    def answer(count: int, hip: str | None = "7.2.0", gfx: str = "gfx942"):
        return lambda: (0, json.dumps({"hip": hip, "torch": "2.13.0", "count": count, "gfx": [gfx] * count}))

    assert check_image_torch("img", answer(2), host, "gfx942").status is Status.OK
    one = check_image_torch("img", answer(1), host, "gfx942")
    assert one.status is Status.FAIL and "rocminfo has 2" in one.detail
    cuda = check_image_torch("img", answer(0, hip=None), host, "gfx942")
    assert cuda.status is Status.FAIL and "ROCm index" in cuda.fix
    broken = check_image_torch("img", lambda: (1, "ModuleNotFoundError: No module named 'torch'"), host, "gfx942")
    assert broken.status is Status.FAIL and "torch" in broken.detail


# ---------------------------------------------------------------- this machine, for real


@pytest.mark.docker
@pytest.mark.skipif(Path("/dev/kfd").exists(), reason="this host has an AMD GPU driver: the bare-machine test does not apply")
def test_this_machine_reports_missing_gpu_and_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_doctor(None, None, min_free_gb=1)
    checks = by_name(report.checks)
    if checks["engine"].status is not Status.OK:
        unavailable(f"Docker engine not reachable: {checks['engine'].detail}")
    assert checks["disk"].status is Status.OK, checks["disk"]
    assert [c.name for c in report.checks if c.status is Status.FAIL] == ["driver"]
    assert report.exit_code != 0
    assert doctor_command("mi355x", min_free_gb=1) == 1
    out = capsys.readouterr().out
    assert "amdgpu kernel driver is not loaded: no /dev/kfd" in out and "NOT READY: validation for target mi355x" in out
    assert doctor_command("local", min_free_gb=1) == 0


def _engine() -> Any:
    docker = require_module("docker")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        unavailable(f"Docker engine not reachable ({exc}); scripts/test starts one")
    return client


def _busybox_image(client: Any, tmp_path: Path, fake_python: str) -> str:
    """An image of a static busybox whose `python` is the shell script given (it stands in for `python -P -c <probe>`)."""
    busybox = next((Path(p) for p in ("/bin/busybox", "/usr/bin/busybox") if Path(p).is_file()), None)
    if busybox is None:
        unavailable("no static busybox to make a test image from: apt-get install busybox-static")
    script = tmp_path / "python"
    script.write_text(fake_python)
    script.chmod(0o755)
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        tar.add(script, arcname="bin/python")
        for applet in ("sh", "ls", "wc"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    ref = f"rocmci-doctor-test:{uuid.uuid4().hex[:12]}"
    repo, tag = ref.split(":")
    client.api.import_image_from_data(rootfs.read_bytes(), repository=repo, tag=tag)
    return ref


@pytest.mark.docker
def test_image_probe_runs_in_a_labelled_container_and_cleans_up(tmp_path: Path) -> None:
    client = _engine()
    # what CPU torch would print
    ref = _busybox_image(client, tmp_path, '#!/bin/sh\necho \'{"hip": null, "torch": "2.13.0+cpu", "count": 0, "gfx": []}\'\n')
    try:
        target = FakeTarget(gfx=None, kind="cpu", device_policy=FakePolicy([], [], "64m"))
        inputs = DoctorInputs(client_factory=lambda: client)
        report = run_doctor("local", target, image=ref, min_free_gb=0, inputs=inputs)
        probe = by_name(report.checks)["image-torch"]
        assert probe.status is Status.OK, probe
        assert "torch 2.13.0+cpu (hip None) sees 0 GPU(s)" in probe.detail
        assert client.containers.list(all=True, filters={"ancestor": ref}) == []
    finally:
        client.images.remove(ref, force=True)


# A `python` that answers as ROCm torch would with the render nodes the container was given: one gfx942 GPU each.
COUNTING_PYTHON = """#!/bin/sh
n=$(ls /dev/dri | wc -l)
gfx=""
i=0
while [ $i -lt $n ]; do gfx="$gfx${gfx:+, }\\"gfx942\\""; i=$((i + 1)); done
echo "{\\"hip\\": \\"7.2.0\\", \\"torch\\": \\"2.13.0\\", \\"count\\": $n, \\"gfx\\": [$gfx]}"
"""


@pytest.mark.docker
def test_image_torch_is_compared_with_the_assigned_gpus(tmp_path: Path) -> None:
    """The real engine, a fake 4-GPU device tree (render nodes are links to /dev/null): the probe container gets
    /dev/kfd and the assigned render nodes only, and doctor compares torch's count with the assignment's."""
    client = _engine()
    ref = _busybox_image(client, tmp_path, COUNTING_PYTHON)
    try:
        for assigned, count in (("renderD136", 1), ("renderD128,renderD152", 2)):
            inputs = gpu_host(tmp_path / f"host-{count}", (90402,) * 4)
            inputs.client_factory, inputs.render_nodes = (lambda: client), assigned
            checks = by_name(run_doctor("mi300x", FakeTarget(), image=ref, min_free_gb=0, inputs=inputs).checks)
            assert checks["assignment"].status is Status.OK, checks["assignment"]
            probe = checks["image-torch"]
            assert probe.status is Status.OK, probe
            assert probe.detail == f"{count} GPU(s): " + ", ".join(["gfx942"] * count)
        assert check_image_torch(
            ref, lambda: (0, '{"hip": "7.2.0", "count": 4, "gfx": []}'), HostGpus("the assignment", 1, ("gfx942",)), "gfx942"
        ).detail.endswith("the assignment has 1")
        assert client.containers.list(all=True, filters={"ancestor": ref}) == []
    finally:
        client.images.remove(ref, force=True)
