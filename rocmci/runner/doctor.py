"""Runner health (`invoke doctor`): can this machine validate images on its AMD GPU, and if not, what to fix.

Every check is a small function over explicit inputs (paths, an engine probe, a command runner) so tests can point
it at temporary directories and canned outputs. `run_doctor` assembles them into a `DoctorReport`; its
`exit_code` is non-zero whenever a check FAILs, i.e. whenever validation cannot run here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from rocmci import labels
from rocmci.engine import docker_client as default_client
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
    read_kfd_topology,
    requested_render_nodes,
    summarize,
)

DEFAULT_MIN_FREE_GB_AMD = 50.0  # ROCm images are 20-30 GB; loading one needs room for its layers on top
DEFAULT_MIN_FREE_GB_CPU = 10.0
ROCMINFO_CANDIDATES = ("rocminfo", "/opt/rocm/bin/rocminfo")
AMD_SMI_CANDIDATES = ("amd-smi", "/opt/rocm/bin/amd-smi")

# Runs inside the image as `python -P -c`: what torch sees through the device flags, as one JSON line.
TORCH_PROBE = (
    "import json, torch\n"
    "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
    "gfx = [torch.cuda.get_device_properties(i).gcnArchName.split(':')[0] for i in range(n)]\n"
    "print(json.dumps({'hip': torch.version.hip, 'torch': torch.__version__, 'count': n, 'gfx': gfx}))\n"
)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class GpuModel:
    """One GPU model of rocmci/resources/gpus.yaml."""

    key: str
    name: str
    gfx: str
    device_ids: frozenset[int]


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


Runner = Callable[[Sequence[str]], tuple[int, str]]


def run_command(argv: Sequence[str], timeout: float = 120) -> tuple[int, str]:
    """Run a host command; (exit code, stdout+stderr). A missing binary or a hang is exit code 127/124."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        return 127, str(exc)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} did not answer within {timeout:.0f} s"
    return done.returncode, (done.stdout or "") + (done.stderr or "")


def find_tool(candidates: Sequence[str], which: Callable[[str], str | None] = shutil.which) -> str | None:
    for candidate in candidates:
        found = which(candidate)
        if found:
            return found
    return None


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


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


# ---------------------------------------------------------------- GPUs: kfd topology, rocminfo, amd-smi


@functools.cache
def gpu_models() -> dict[str, GpuModel]:
    """rocmci/resources/gpus.yaml's models, by the target name that means each."""
    from rocmci import resources

    models = resources.load("gpus.yaml")["models"]
    return {
        key: GpuModel(key, model["name"], model["gfx"], frozenset(int(i, 16) for i in model["pci_device_ids"]))
        for key, model in models.items()
    }


def model_of_device(device_id: int) -> GpuModel | None:
    return next((model for model in gpu_models().values() if device_id in model.device_ids), None)


def model_of_target(gpu: str) -> GpuModel | None:
    """The model a target name means: `mi300x`, or the part before a dash (`mi300x-8gpu`)."""
    models = gpu_models()
    return models.get(gpu) or models.get(gpu.split("-", 1)[0])


def _describe_models(device_ids: Sequence[int]) -> str:
    counts: dict[str, int] = {}
    for device_id in device_ids:
        model = model_of_device(device_id)
        name = f"{model.name} (0x{device_id:04x})" if model else f"an unknown device 0x{device_id:04x}"
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} x {name}" for name, n in counts.items())


def check_gpu_model(gpu: str | None, seen: HostGpus) -> Check:
    """The GPU model, not only the gfx: MI300X and MI325X share gfx942 but not their peak bandwidth."""
    if not seen.device_ids:
        return Check("gpu-model", Status.SKIP, f"{seen.source} gives no PCI device ids: model not checked")
    found = _describe_models(seen.device_ids)
    want = model_of_target(gpu) if gpu else None
    if gpu is None:
        return Check("gpu-model", Status.OK, found)
    if want is None:
        return Check(
            "gpu-model",
            Status.SKIP,
            f"{found}; target {gpu} names no model of rocmci/resources/gpus.yaml, so the model is not compared",
        )
    others = sorted({m.key for m in map(model_of_device, seen.device_ids) if m is not None and m != want})
    if others:
        return Check(
            "gpu-model",
            Status.FAIL,
            f"this runner has {found}, but target {gpu} is {want.name}",
            f"label this runner {' / '.join(others)}, not {gpu} (the smoke test judges bandwidth against the target's "
            f"peak), or run {gpu} jobs on {want.name} hosts",
        )
    if any(model_of_device(d) is None for d in seen.device_ids):
        return Check(
            "gpu-model",
            Status.WARN,
            f"{found}: cannot tell whether every GPU is {want.name}",
            "add the device id to rocmci/resources/gpus.yaml (its source: pci.ids) if it is a known model",
        )
    return Check("gpu-model", Status.OK, found)


def parse_rocminfo(text: str) -> HostGpus:
    """GPU agents from `rocminfo`: blocks `Agent N` whose `Device Type` is GPU, their `Name: gfxNNN`."""
    gfx: list[str] = []
    for block in re.split(r"^\s*\*+\s*\n\s*Agent \d+\s*\n\s*\*+\s*$", text, flags=re.MULTILINE)[1:]:
        kind = re.search(r"^\s*Device Type:\s*(\S+)", block, flags=re.MULTILINE)
        name = re.search(r"^\s*Name:\s*(gfx[0-9a-f]+)\s*$", block, flags=re.MULTILINE)
        if kind and kind.group(1).upper() == "GPU":
            gfx.append(name.group(1) if name else "unknown")
    return HostGpus("rocminfo", len(gfx), tuple(gfx))


def parse_amd_smi_list(text: str) -> int | None:
    """GPU count from `amd-smi list --json` (a list of GPUs, or an object holding one); None if unreadable."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    return len(data) if isinstance(data, list) else None


def _gpu_agreement(name: str, seen: HostGpus, expect_gfx: str | None, fix_hint: str) -> Check:
    detail = f"{seen.count} GPU(s): {', '.join(seen.gfx) or '-'}"
    if seen.count == 0:
        return Check(name, Status.FAIL, f"{seen.source} sees no GPU", fix_hint)
    if expect_gfx and expect_gfx not in seen.gfx:
        return Check(
            name,
            Status.FAIL,
            f"{detail}; the target needs {expect_gfx}",
            f"this runner has {', '.join(sorted(set(seen.gfx)))}: fix its labels so {expect_gfx} jobs do not land here",
        )
    return Check(name, Status.OK, detail)


def check_kfd_topology(sys_root: Path, expect_gfx: str | None) -> tuple[Check, HostGpus | None]:
    seen = read_kfd_topology(sys_root)
    if seen is None:
        return Check(
            "kfd-topology",
            Status.FAIL,
            f"{sys_root / KFD_TOPOLOGY} missing: no KFD",
            "load the amdgpu driver (`sudo modprobe amdgpu`)",
        ), None
    return _gpu_agreement("kfd-topology", seen, expect_gfx, "check `dmesg | grep -i amdgpu` for driver errors"), seen


def check_rocminfo(
    reference: HostGpus | None, runner: Runner = run_command, which: Callable[[str], str | None] = shutil.which
) -> Check:
    """Optional cross-check of the KFD topology: the images carry their own ROCm, so the host needs no rocminfo."""
    tool = find_tool(ROCMINFO_CANDIDATES, which)
    if not tool:
        return Check("rocminfo", Status.SKIP, "rocminfo not installed (optional: the KFD topology gives the GPUs)")
    code, out = runner([tool])
    if code != 0:
        return Check(
            "rocminfo",
            Status.WARN,
            f"`{tool}` exited {code}: {_tail(out)}",
            "optional: rocminfo needs /dev/kfd readable by this user (render and video groups); the containers get "
            "the devices from Docker either way",
        )
    seen = parse_rocminfo(out)
    detail = f"{seen.count} GPU(s): {', '.join(seen.gfx) or '-'}"
    if reference is not None and sorted(seen.gfx) != sorted(reference.gfx):
        return Check(
            "rocminfo",
            Status.WARN,
            f"{detail}, but the {reference.source} has {reference.count}: {', '.join(reference.gfx) or '-'}",
            "a GPU is hidden from this user or in a bad state: see `dmesg | grep -i amdgpu`",
        )
    return Check("rocminfo", Status.OK, detail)


def check_amd_smi(
    reference: HostGpus | None, runner: Runner = run_command, which: Callable[[str], str | None] = shutil.which
) -> Check:
    tool = find_tool(AMD_SMI_CANDIDATES, which)
    if not tool:
        return Check("amd-smi", Status.SKIP, "amd-smi not installed (optional)")
    code, out = runner([tool, "list", "--json"])
    count = parse_amd_smi_list(out) if code == 0 else None
    if count is None:
        return Check(
            "amd-smi",
            Status.WARN,
            f"`{tool} list --json` exited {code}: {_tail(out)}",
            "optional: repair the ROCm SMI install (`amd-smi version`)",
        )
    if reference is not None and count != reference.count:
        return Check(
            "amd-smi",
            Status.WARN,
            f"{count} GPU(s), but the {reference.source} has {reference.count}",
            "a GPU is hidden or in a bad state: see `amd-smi list` and `dmesg`",
        )
    return Check("amd-smi", Status.OK, f"{count} GPU(s)")


# ---------------------------------------------------------------- torch in the image


def probe_image_torch(
    client: Any,
    image: str,
    devices: Sequence[str],
    group_add: Sequence[str],
    shm_size: str,
    network: str,
    gpu: str | None,
    timeout: float = 300,
) -> tuple[int, str]:
    """Run TORCH_PROBE in `image` with the device mappings (`host:container:rwm`); (exit code, stdout). The container
    is labelled and removed."""
    container_labels = {
        labels.MANAGED: "true",
        labels.ROLE: "doctor",
        labels.GPU: gpu or "",
        labels.DEVICES: ",".join(d.split(":")[1] for d in devices),
    }
    container = client.containers.create(
        image,
        entrypoint=["python", "-P", "-c", TORCH_PROBE],
        devices=list(devices),
        group_add=list(group_add),
        shm_size=shm_size,
        network_mode=network,
        labels=container_labels,
        detach=True,
    )
    try:
        container.start()
        code = int(container.wait(timeout=timeout).get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=code != 0).decode(errors="replace")
    finally:
        container.remove(force=True)
    return code, out


def check_image_torch(
    image: str | None, probe: Callable[[], tuple[int, str]] | None, host: HostGpus | None, expect_gfx: str | None
) -> Check:
    if not image:
        return Check("image-torch", Status.SKIP, "no --image given: torch in the image not probed")
    if probe is None:
        return Check("image-torch", Status.SKIP, f"{image}: not probed (engine or devices missing, see above)")
    try:
        code, out = probe()
    except Exception as exc:  # docker errors: image missing, bad device, group not found
        return Check(
            "image-torch",
            Status.FAIL,
            f"{image}: could not run the probe: {exc}",
            f"load or pull {image} first; check the device flags with `docker run --device /dev/kfd ...`",
        )
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        seen = json.loads(last)
    except ValueError:
        return Check(
            "image-torch",
            Status.FAIL,
            f"{image}: probe exited {code}: {_tail(out)}",
            "the image needs torch and `python` on PATH",
        )
    torch_gpus = HostGpus("torch in the image", int(seen.get("count", 0)), tuple(seen.get("gfx", [])))
    what = f"torch {seen.get('torch')} (hip {seen.get('hip')}) sees {torch_gpus.count} GPU(s): {', '.join(torch_gpus.gfx) or '-'}"
    if expect_gfx is None:
        return Check("image-torch", Status.OK, what)
    if not seen.get("hip"):
        return Check("image-torch", Status.FAIL, what, "the image has a non-ROCm torch: reinstall torch from the ROCm index")
    if host is not None and torch_gpus.count != host.count:
        return Check(
            "image-torch",
            Status.FAIL,
            f"{what}; {host.source} has {host.count}",
            "the container got /dev/kfd and the assigned render nodes: check their owner gid is passed via --group-add "
            "and that `dmesg | grep -i amdgpu` shows no GPU in a bad state",
        )
    return _gpu_agreement("image-torch", torch_gpus, expect_gfx, "pass --device /dev/kfd and the assigned render nodes")


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
