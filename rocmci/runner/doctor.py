"""Runner health (`invoke doctor`): can this machine validate images on its AMD GPU, and if not, what to fix.

Every check is a small function over explicit inputs (paths, an engine probe, a command runner) so tests can point
it at temporary directories and canned outputs. `run_doctor` assembles them into a `DoctorReport`; its
`exit_code` is non-zero whenever a check FAILs, i.e. whenever validation cannot run here.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rocmci import labels
from rocmci.engine import docker_client as default_client
from rocmci.runner.checks import Check, Runner, Status, run_command
from rocmci.runner.gpu_checks import (
    check_amd_smi,
    check_gpu_model,
    check_image_torch,
    check_kfd_topology,
    check_rocminfo,
    probe_image_torch,
)
from rocmci.validate.host import (
    KFD_TOPOLOGY,
    RENDER_NODES_ENV,
    DeviceAssignmentError,
    Gpu,
    GroupIds,
    HostGpus,
    NoneAssigned,
    assigned_gpus,
    device_mappings,
    find_render_nodes,
    read_groups,
    requested_render_nodes,
    summarize,
)

DEFAULT_MIN_FREE_GB_AMD = 50.0  # ROCm images are 20-30 GB; loading one needs room for its layers on top
DEFAULT_MIN_FREE_GB_CPU = 10.0


@dataclass(frozen=True)
class EngineInfo:
    reachable: bool
    version: str = ""
    api_version: str = ""
    root_dir: str = ""
    error: str = ""


@dataclass(frozen=True)
class DoctorReport:
    gpu: str | None
    gpu_required: bool
    checks: tuple[Check, ...]

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status in (Status.FAIL, Status.WARN))

    @property
    def can_validate(self) -> bool:
        return not any(c.status is Status.FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.can_validate else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": labels.DOCTOR_SCHEMA,
            "gpu": self.gpu,
            "gpu_required": self.gpu_required,
            "can_validate": self.can_validate,
            "checks": [asdict(c) for c in self.checks],
        }

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{'check':<{width}}  status  detail"]
        lines += [f"{c.name:<{width}}  {c.status.value:<6}  {c.detail}" for c in self.checks]
        if self.problems:
            lines += ["", "fixes:"]
            lines += [f"  [{c.status.value}] {c.name}: {c.fix or c.detail}" for c in self.problems]
        what = f"validation for target {self.gpu}" if self.gpu else "GPU validation"
        failed = sum(c.status is Status.FAIL for c in self.checks)
        verdict = (
            f"ready: {what} can run here"
            if self.can_validate
            else f"NOT READY: {what} cannot run here ({failed} failing check(s))"
        )
        return "\n".join([*lines, "", verdict])


class DevicePolicyLike(Protocol):
    @property
    def devices(self) -> list[str]: ...
    @property
    def group_add(self) -> list[str]: ...
    @property
    def shm_size(self) -> str: ...
    @property
    def network(self) -> str: ...


class TargetLike(Protocol):
    """What doctor reads of a matrix target (rocmci.plan.Target)."""

    @property
    def kind(self) -> str: ...
    @property
    def gfx(self) -> str | None: ...
    @property
    def device_policy(self) -> DevicePolicyLike: ...


# ---------------------------------------------------------------- engine, buildx, disk


def probe_engine(client_factory: Callable[[], Any] | None = None) -> tuple[EngineInfo, Any]:
    """(what the engine says about itself, the client or None). Never raises."""
    factory = client_factory or default_client
    try:
        client = factory()
        version = client.version()
        info = client.info()
    except Exception as exc:  # EngineUnavailable, DockerException, OSError: all mean "not reachable"
        return EngineInfo(reachable=False, error=str(exc).strip() or type(exc).__name__), None
    return EngineInfo(
        True, str(version.get("Version", "?")), str(version.get("ApiVersion", "?")), str(info.get("DockerRootDir", ""))
    ), client


def check_engine(engine: EngineInfo) -> Check:
    if engine.reachable:
        return Check("engine", Status.OK, f"Docker {engine.version}, API {engine.api_version}")
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    detail = engine.error if where in engine.error else f"Docker engine not reachable at {where}: {engine.error}"
    return Check(
        "engine",
        Status.FAIL,
        detail,
        "start dockerd (`sudo systemctl start docker`), add the runner user to the `docker` group, "
        "or set DOCKER_HOST to the engine's socket",
    )


def check_buildx(runner: Runner, docker_cli: str | None) -> Check:
    """Info only: rocmci builds with the legacy builder when buildx is absent."""
    cli = docker_cli
    if not cli:
        return Check(
            "buildx",
            Status.WARN,
            "no docker CLI on PATH: cannot tell whether buildx is installed",
            "install the docker CLI with the buildx plugin (docker-buildx-plugin or Debian's docker-buildx)",
        )
    code, out = runner([cli, "buildx", "version"])
    if code == 0:
        return Check("buildx", Status.OK, out.strip().splitlines()[0] if out.strip() else "present")
    return Check(
        "buildx",
        Status.WARN,
        "buildx not installed: builds use the legacy builder (no BuildKit cache)",
        "optional: install docker-buildx-plugin (Docker's apt repo) or docker-buildx (Debian 13+)",
    )


def check_disk(path: Path, min_free_gb: float) -> Check:
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free_gb = shutil.disk_usage(where).free / 1e9
    except OSError as exc:
        return Check(
            "disk",
            Status.WARN,
            f"cannot read free space of {path}: {exc.strerror}",
            "run doctor on the engine's host, or check `docker system df` there",
        )
    detail = f"{free_gb:.0f} GB free on {where} (docker data root {path}; need >= {min_free_gb:.0f} GB)"
    if free_gb >= min_free_gb:
        return Check("disk", Status.OK, detail)
    return Check(
        "disk",
        Status.FAIL,
        detail,
        f"free {min_free_gb - free_gb:.0f} GB on {where}: `invoke clean --keep 1`, `docker builder prune`, "
        "or move the data root (`data-root` in /etc/docker/daemon.json) to a larger disk",
    )


def check_engine_disk(engine: EngineInfo, min_free_gb: float) -> Check:
    """Free space where the engine keeps images; only measurable when the engine runs on this machine."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return Check("disk", Status.SKIP, f"engine at {host} is remote: run doctor on that host to check its disk")
    return check_disk(Path(engine.root_dir or "/var/lib/docker"), min_free_gb)


# ---------------------------------------------------------------- devices and groups


def check_driver(dev_root: Path = Path("/dev"), sys_root: Path = Path("/sys")) -> Check:
    """The root cause every GPU check depends on: the amdgpu driver, seen as /dev/kfd or the KFD topology in sysfs."""
    kfd, topology = dev_root / "kfd", sys_root / KFD_TOPOLOGY
    seen = [str(path) for path in (kfd, topology) if path.exists()]
    if seen:
        return Check("driver", Status.OK, "amdgpu loaded: " + " and ".join(seen))
    return Check(
        "driver",
        Status.FAIL,
        f"the amdgpu kernel driver is not loaded: no {kfd} and no {topology}. So there is no render node and no GPU "
        "to find, and no validation can run here; the GPU checks below are not run",
        "install the amdgpu driver (`amdgpu-install --usecase=dkms`) and `sudo modprobe amdgpu`; in a VM, pass the GPU "
        "through; then run doctor again",
    )


def check_kfd(dev_root: Path = Path("/dev")) -> Check:
    kfd = dev_root / "kfd"
    if not kfd.exists():
        return Check(
            "kfd",
            Status.FAIL,
            f"{kfd} missing although the amdgpu driver is loaded (its KFD topology is in sysfs)",
            "inside a container, start it with --device=/dev/kfd; on a host, check the udev rules (`ls -l /dev/kfd`)",
        )
    if not stat.S_ISCHR(kfd.stat().st_mode):
        return Check(
            "kfd",
            Status.WARN,
            f"{kfd} exists but is not a character device",
            "remove the stray file and reload the amdgpu driver",
        )
    return Check("kfd", Status.OK, f"{kfd} present")


def check_render_nodes(dev_root: Path = Path("/dev")) -> Check:
    nodes = find_render_nodes(dev_root)
    if not nodes:
        return Check(
            "render-nodes",
            Status.FAIL,
            f"no {dev_root / 'dri'}/renderD* render nodes",
            "inside a container, start it with --device /dev/dri; on a host, check `dmesg | grep -i amdgpu` for a GPU "
            "the driver did not bring up",
        )
    return Check("render-nodes", Status.OK, f"{len(nodes)}: " + ", ".join(p.name for p in nodes))


def check_groups(groups: GroupIds, etc_group: Path = Path("/etc/group")) -> Check:
    shown = f"video={groups.video}, render={groups.render}"
    if groups.render_node_gids:
        shown += ", render nodes owned by gid " + ",".join(map(str, groups.render_node_gids))
        if groups.render is None or any(g not in (groups.render, groups.video) for g in groups.render_node_gids):
            return Check(
                "groups",
                Status.WARN,
                shown,
                "the render nodes' gid is not the `render` group of " + str(etc_group) + ": pass it numerically, "
                f"--group-add {groups.render_node_gids[0]} (docker resolves group names inside the image)",
            )
        return Check("groups", Status.OK, shown + f" (use --group-add {groups.render} --group-add {groups.video})")
    if groups.video is None or groups.render is None:
        missing = " and ".join(n for n, g in (("video", groups.video), ("render", groups.render)) if g is None)
        return Check(
            "groups",
            Status.WARN,
            f"{shown}: no {missing} group in {etc_group} and no render node to read a gid from",
            "install the amdgpu driver (its udev rules create the render group and own /dev/dri/renderD* by it)",
        )
    return Check(
        "groups", Status.WARN, shown + " (no render node to confirm against)", "load the amdgpu driver so /dev/dri/renderD* exist"
    )


# ---------------------------------------------------------------- assembly


GPU_CHECKS = ("kfd", "render-nodes", "groups", "kfd-topology", "gpu-model", "assignment", "rocminfo", "amd-smi")


def check_assignment(io: DoctorInputs) -> tuple[Check, tuple[Gpu, ...]]:
    """The GPUs a validation job on this runner gets (--render-nodes, or ROCMCI_RENDER_NODES set by the runner's owner)."""
    try:
        assignment = assigned_gpus(requested_render_nodes(io.render_nodes, io.env), io.dev_root, io.sys_root)
    except NoneAssigned as exc:
        shown = ", ".join(g.describe() for g in exc.gpus)
        return Check(
            "assignment",
            Status.WARN,
            f"{len(exc.gpus)} GPUs, none assigned to this runner: {shown}",
            f"set {RENDER_NODES_ENV} for each runner to the render node(s) of its GPU(s), e.g. "
            f"{RENDER_NODES_ENV}={exc.gpus[0].render_node}; until then `invoke validate` refuses to run here "
            "except with --parallel N (one GPU per entry)",
        ), exc.gpus
    except DeviceAssignmentError as exc:
        return Check(
            "assignment", Status.FAIL, str(exc), f"name render nodes of this host's GPUs (see kfd-topology) in {RENDER_NODES_ENV}"
        ), ()
    if not assignment.gpus:
        return Check("assignment", Status.FAIL, "no GPU to assign: the KFD topology lists none", "see kfd-topology"), ()
    return Check("assignment", Status.OK, assignment.describe()), assignment.gpus


def _host_gpu_checks(
    gpu: str | None, expect_gfx: str | None, io: DoctorInputs
) -> tuple[list[Check], HostGpus | None, GroupIds, tuple[Gpu, ...]]:
    """GPU_CHECKS, with the driver loaded: devices, groups, then the GPUs from sysfs first and the tools as cross-checks."""
    nodes = find_render_nodes(io.dev_root)
    groups = read_groups(io.etc_group, nodes)
    topo_check, topo = check_kfd_topology(io.sys_root, expect_gfx)
    if topo is not None and topo_check.status is Status.OK:
        model = check_gpu_model(gpu, topo)
    else:
        model = Check("gpu-model", Status.SKIP, "not run: see kfd-topology")
    assignment, gpus = check_assignment(io)
    checks = [check_kfd(io.dev_root), check_render_nodes(io.dev_root), check_groups(groups, io.etc_group), topo_check, model]
    checks += [assignment, check_rocminfo(topo, io.runner, io.which), check_amd_smi(topo, io.runner, io.which)]
    return checks, topo, groups, gpus


@dataclass
class DoctorInputs:
    """Where the checks look; tests point these at temporary trees and canned commands."""

    dev_root: Path = Path("/dev")
    sys_root: Path = Path("/sys")
    etc_group: Path = Path("/etc/group")
    runner: Runner = run_command
    which: Callable[[str], str | None] = shutil.which
    client_factory: Callable[[], Any] | None = None
    render_nodes: str | None = None  # --render-nodes; None reads ROCMCI_RENDER_NODES from env
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)


def min_free_gb_for(target: TargetLike | None, override: float | None = None) -> float:
    if override is not None:
        return override
    env = os.environ.get("ROCMCI_MIN_FREE_GB")
    if env:
        return float(env)
    return DEFAULT_MIN_FREE_GB_CPU if target is not None and target.kind == "cpu" else DEFAULT_MIN_FREE_GB_AMD


def run_doctor(
    gpu: str | None,
    target: TargetLike | None,
    *,
    image: str | None = None,
    min_free_gb: float | None = None,
    inputs: DoctorInputs | None = None,
) -> DoctorReport:
    """All checks for `gpu` (a matrix target, or None: any AMD GPU). CPU targets need no GPU checks."""
    io = inputs or DoctorInputs()
    gpu_required = target is None or target.kind == "amd"
    expect_gfx = target.gfx if target is not None else None
    engine, client = probe_engine(io.client_factory)
    checks = [check_engine(engine), check_buildx(io.runner, io.which("docker"))]
    assigned: HostGpus | None = None
    gpus: tuple[Gpu, ...] = ()
    groups = GroupIds(None, None)
    if gpu_required:
        driver = check_driver(io.dev_root, io.sys_root)
        checks.append(driver)
        if driver.status is Status.OK:
            gpu_checks, _topology, groups, gpus = _host_gpu_checks(gpu, expect_gfx, io)
            checks += gpu_checks
            assigned = summarize(gpus, "the assignment") if gpus else None
        else:
            checks += [Check(name, Status.SKIP, "not run: no amdgpu driver (see driver)") for name in GPU_CHECKS]
    else:
        reason = f"not needed for target {gpu} (cpu only: no aiter kernel runs there)"
        checks += [Check(name, Status.SKIP, reason) for name in ("driver", *GPU_CHECKS)]
    devices_ok = not gpu_required or (
        all(c.status is Status.OK for c in checks if c.name in ("driver", "kfd", "render-nodes")) and bool(gpus)
    )
    probe: Callable[[], tuple[int, str]] | None = None
    if image and client is not None and devices_ok:
        policy = target.device_policy if target is not None else None
        wanted = list(policy.devices) if policy else (["/dev/kfd", "/dev/dri"] if gpu_required else [])
        devices, _missing = device_mappings(wanted, io.dev_root, gpus)
        group_add = groups.group_add(policy.group_add if policy else ["video", "render"]) if gpu_required else []
        shm, network = (policy.shm_size, policy.network) if policy else ("2g", "none")
        probe = functools.partial(probe_image_torch, client, image, devices, group_add, shm, network, gpu)
    checks.append(check_image_torch(image, probe, assigned, expect_gfx))
    checks.append(check_engine_disk(engine, min_free_gb_for(target, min_free_gb)))
    return DoctorReport(gpu=gpu, gpu_required=gpu_required, checks=tuple(checks))


def doctor_command(
    gpu: str | None = None,
    image: str | None = None,
    matrix_path: str | None = None,
    min_free_gb: float | None = None,
    as_json: bool = False,
    render_nodes: str | None = None,
) -> int:
    """`invoke doctor [--gpu G] [--image REF] [--min-free-gb N] [--render-nodes R] [--json]`: print the report, return
    the exit code."""
    target = None
    if gpu is not None:
        from rocmci.errors import MatrixError, Problem
        from rocmci.plan import load_matrix

        targets = load_matrix(matrix_path).targets
        if gpu not in targets:
            known = ", ".join(sorted(targets))
            raise MatrixError(
                [Problem(matrix_path or "matrix.yaml", None, "--gpu", f"unknown GPU target {gpu!r} (known: {known})")]
            )
        target = targets[gpu]
    report = run_doctor(gpu, target, image=image, min_free_gb=min_free_gb, inputs=DoctorInputs(render_nodes=render_nodes))
    print(json.dumps(report.to_dict(), indent=2) if as_json else report.table())
    return report.exit_code
