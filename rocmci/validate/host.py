"""The host's AMD GPUs as the kernel shows them, and which of them a job may use.

One place for device discovery, shared by `invoke validate` (what a check container gets) and `invoke doctor` (what
it reports). Every function takes its roots (`/dev`, `/sys`, `/etc/group`) so tests run against a fake device tree.

GPUs map to render nodes through the KFD topology: each GPU node's `properties` names its `drm_render_minor`
(render node `/dev/dri/renderD<minor>`); node numbers, render minors and PCI order need not agree, so render nodes
are never counted from renderD128.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rocmci.errors import RunError

# /sys/class/kfd/kfd is a link to this directory.
KFD_TOPOLOGY = "devices/virtual/kfd/kfd/topology/nodes"
RENDER_NODES_ENV = "ROCMCI_RENDER_NODES"
RENDER_NODES_OPTION = "--render-nodes"
_RENDER_NODE = re.compile(r"(?:/dev/dri/)?(renderD\d+)")


class DeviceAssignmentError(RunError):
    """The GPUs a job was given cannot be used as given (unknown render node, missing file, none chosen)."""


class NoneAssigned(DeviceAssignmentError):
    """A host with several GPUs and no assignment: which GPU a job may use is the runner owner's choice."""

    def __init__(self, message: str, gpus: Sequence[Gpu]):
        super().__init__(message)
        self.gpus = tuple(gpus)


@dataclass(frozen=True)
class Gpu:
    """One GPU node of the KFD topology."""

    node: int
    gpu_id: int
    gfx: str
    device_id: int  # PCI device id (vendor 0x1002)
    render_minor: int | None

    @property
    def render_node(self) -> str | None:
        return f"renderD{self.render_minor}" if self.render_minor is not None else None

    def describe(self) -> str:
        return f"{self.render_node or 'no render node'} (KFD node {self.node}, {self.gfx})"


@dataclass(frozen=True)
class HostGpus:
    """GPUs as one source (kfd topology, rocminfo, amd-smi, torch in the image) sees them."""

    source: str
    count: int
    gfx: tuple[str, ...]
    device_ids: tuple[int, ...] = ()  # PCI device ids (vendor 0x1002), where the source gives them


@dataclass(frozen=True)
class GroupIds:
    video: int | None
    render: int | None
    render_node_gids: tuple[int, ...] = ()

    def group_add(self, fallback: Sequence[str]) -> list[str]:
        """Numeric gids for `docker run --group-add`: names are resolved inside the image, gids are not."""
        gids = {g for g in (self.video, self.render, *self.render_node_gids) if g is not None}
        return [str(g) for g in sorted(gids)] if gids else list(fallback)


# ---------------------------------------------------------------- discovery


def gfx_from_target_version(version: int) -> str:
    """kfd's gfx_target_version (major*10000 + minor*100 + stepping) as a gfx name: 90402 -> gfx942, 90010 -> gfx90a."""
    major, minor, stepping = version // 10000, (version // 100) % 100, version % 100
    return f"gfx{major}{minor:x}{stepping:x}"


def _node_number(properties: Path) -> int:
    return int(properties.parent.name) if properties.parent.name.isdigit() else -1


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in path.read_text().splitlines())
    return {pair[0]: pair[1].strip() for pair in pairs if len(pair) == 2}


def _number(values: Mapping[str, str], key: str) -> int:
    text = values.get(key, "0")
    return int(text) if text.isdigit() else 0


def read_kfd_gpus(sys_root: Path = Path("/sys")) -> list[Gpu] | None:
    """The GPU nodes of the KFD topology in node order (None: no topology, the amdgpu driver is not loaded).

    A node with `gpu_id 0` is a CPU; older kernels lack `gpu_id`, so a node counts as a GPU where either id is set."""
    nodes = sys_root / KFD_TOPOLOGY
    if not nodes.is_dir():
        return None
    gpus = []
    for path in sorted(nodes.glob("*/properties"), key=_node_number):
        values = _properties(path)
        version = _number(values, "gfx_target_version")
        gpu_id = _number(values, "gpu_id")
        if version == 0 or ("gpu_id" in values and gpu_id == 0):
            continue
        minor = values.get("drm_render_minor", "")
        render_minor = int(minor) if minor.isdigit() and int(minor) > 0 else None
        gpus.append(Gpu(_node_number(path), gpu_id, gfx_from_target_version(version), _number(values, "device_id"), render_minor))
    return gpus


def summarize(gpus: Sequence[Gpu], source: str = "kfd topology") -> HostGpus:
    return HostGpus(source, len(gpus), tuple(g.gfx for g in gpus), tuple(g.device_id for g in gpus))


def read_kfd_topology(sys_root: Path = Path("/sys")) -> HostGpus | None:
    """GPU nodes of the KFD topology: gfx from `gfx_target_version`, PCI id from `device_id` (both decimal)."""
    gpus = read_kfd_gpus(sys_root)
    return None if gpus is None else summarize(gpus)


def find_render_nodes(dev_root: Path = Path("/dev")) -> list[Path]:
    dri = dev_root / "dri"
    return sorted(dri.glob("renderD*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)) if dri.is_dir() else []


def read_group_ids(etc_group: Path = Path("/etc/group")) -> dict[str, int]:
    groups: dict[str, int] = {}
    try:
        text = etc_group.read_text()
    except OSError:
        return groups
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            groups.setdefault(parts[0], int(parts[2]))
    return groups


def read_groups(etc_group: Path, render_nodes: Sequence[Path]) -> GroupIds:
    names = read_group_ids(etc_group)
    node_gids = tuple(sorted({p.stat().st_gid for p in render_nodes}))
    return GroupIds(video=names.get("video"), render=names.get("render"), render_node_gids=node_gids)


# ---------------------------------------------------------------- assignment


@dataclass(frozen=True)
class Request:
    """The render nodes a job was given, and where they came from (the option, the variable, or nowhere)."""

    render_nodes: tuple[str, ...] = ()
    source: str = ""


def requested_render_nodes(option: str | None, env: Mapping[str, str] | None = None) -> Request:
    """`--render-nodes renderD128,renderD136` wins over ROCMCI_RENDER_NODES; `/dev/dri/renderD128` is accepted too."""
    env = os.environ if env is None else env
    text, source = (option, RENDER_NODES_OPTION) if option is not None else (env.get(RENDER_NODES_ENV), RENDER_NODES_ENV)
    if text is None or not text.strip():
        if option is not None:
            raise DeviceAssignmentError(f"{RENDER_NODES_OPTION}: empty; give render nodes such as renderD128,renderD136")
        return Request()
    names = []
    for item in (part.strip() for part in text.split(",")):
        match = _RENDER_NODE.fullmatch(item)
        if not match:
            raise DeviceAssignmentError(f"{source}: {item!r} is not a render node (expected renderD<N> or /dev/dri/renderD<N>)")
        if match.group(1) in names:
            raise DeviceAssignmentError(f"{source}: {match.group(1)} is named twice")
        names.append(match.group(1))
    return Request(tuple(names), source)


@dataclass(frozen=True)
class Assignment:
    """The GPUs a job's containers get: `/dev/kfd` plus exactly these render nodes."""

    gpus: tuple[Gpu, ...]
    source: str

    @property
    def render_nodes(self) -> list[str]:
        return [g.render_node for g in self.gpus if g.render_node]

    def describe(self) -> str:
        if not self.gpus:
            return f"no GPU ({self.source})"
        return ", ".join(g.describe() for g in self.gpus) + f" ({self.source})"


def _known(gpus: Sequence[Gpu]) -> str:
    return ", ".join(g.describe() for g in gpus) or "none"


def _usable(gpu: Gpu, dev_root: Path, source: str) -> Gpu:
    if gpu.render_node is None:
        raise DeviceAssignmentError(
            f"{source}: KFD node {gpu.node} ({gpu.gfx}) names no drm_render_minor: cannot give it to a job"
        )
    path = dev_root / "dri" / gpu.render_node
    if not path.exists():
        raise DeviceAssignmentError(f"{source}: {gpu.render_node}: {path} does not exist although the KFD topology names it")
    return gpu


def assigned_gpus(request: Request, dev_root: Path = Path("/dev"), sys_root: Path = Path("/sys")) -> Assignment:
    """The GPUs a job may use: the ones named, each checked against the KFD topology and /dev/dri; with none named,
    the host's only GPU (or none on a host without one). A host with several GPUs and none named is an error: a job
    given all of /dev/dri would see, and could collide on, the GPUs of every other runner sharing the host."""
    gpus = read_kfd_gpus(sys_root)
    if request.render_nodes:
        if gpus is None:
            raise DeviceAssignmentError(
                f"{request.source}: {', '.join(request.render_nodes)} assigned, but there is no KFD topology at "
                f"{sys_root / KFD_TOPOLOGY} (the amdgpu driver is not loaded): no GPU to give"
            )
        by_node = {g.render_node: g for g in gpus if g.render_node}
        chosen = []
        for name in request.render_nodes:
            if name not in by_node:
                raise DeviceAssignmentError(
                    f"{request.source}: {name} is not the render node of any GPU in the KFD topology (GPUs: {_known(gpus)})"
                )
            chosen.append(_usable(by_node[name], dev_root, request.source))
        return Assignment(tuple(chosen), request.source)
    if not gpus:
        return Assignment((), "no GPU on this host")
    if len(gpus) == 1:
        return Assignment((_usable(gpus[0], dev_root, "the host's only GPU"),), "the host's only GPU")
    raise NoneAssigned(
        f"this host has {len(gpus)} GPUs ({_known(gpus)}) and none is assigned to this job: pass {RENDER_NODES_OPTION} "
        f"renderD<N>[,...] or set {RENDER_NODES_ENV} for this runner (or use --parallel N to give each entry one GPU)",
        gpus,
    )


def gpu_pool(request: Request, dev_root: Path = Path("/dev"), sys_root: Path = Path("/sys")) -> list[Gpu]:
    """The GPUs `--parallel` hands out one per entry: the assigned ones, or every GPU of the host when none is named."""
    if request.render_nodes:
        return list(assigned_gpus(request, dev_root, sys_root).gpus)
    return [_usable(gpu, dev_root, "the host's GPUs") for gpu in read_kfd_gpus(sys_root) or []]


def device_mappings(policy_devices: Sequence[str], dev_root: Path, gpus: Sequence[Gpu]) -> tuple[list[str], list[str]]:
    """(`host:container:rwm` mappings, devices missing here) for a target's device policy; `/dev/dri` in a policy
    means the render nodes of `gpus` (the job's assignment), never all of /dev/dri."""
    devices, missing = [], []
    for device in policy_devices:
        if device == "/dev/dri":
            names = [g.render_node for g in gpus if g.render_node]
            if not names:
                missing.append("/dev/dri/renderD*")  # no GPU assigned: HIP would see none
            devices += [f"{dev_root / 'dri' / name}:/dev/dri/{name}:rwm" for name in names]
            continue
        host_path = dev_root / Path(device).relative_to("/dev")
        if host_path.exists():
            devices.append(f"{host_path}:{device}:rwm")
        else:
            missing.append(device)
    return devices, missing
