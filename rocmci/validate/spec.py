"""What a check container is given: the target's device policy resolved on this host for the GPUs assigned to the
job, and the probe and smoke command lines with the entry's pins and gates."""

from __future__ import annotations

import grp
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocmci import labels
from rocmci.errors import RunError
from rocmci.plan import Entry, Target
from rocmci.validate.host import Gpu, device_mappings

CHECKS_DIR = "/opt/rocmci/checks"


@dataclass(frozen=True)
class ContainerSpec:
    """What `docker run` gets for one entry: the target's device policy resolved on this host."""

    devices: list[str]
    group_add: list[str]
    shm_size: str
    network_mode: str
    labels: dict[str, str]
    cap_add: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    ulimits: list[Any] = field(default_factory=list)  # docker.types.Ulimit
    missing_devices: list[str] = field(default_factory=list)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # `invoke check --image`: rocmci's checks, read-only
    tmpfs: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/tmp"
    entrypoint: list[str] | None = None  # [""]: the image's own ENTRYPOINT (a server, say) is not run

    @property
    def render_nodes(self) -> list[str]:
        """The render nodes inside the container (`/dev/dri/renderD<N>`), i.e. the GPUs it was given."""
        return [mapping.split(":")[1] for mapping in self.devices if mapping.split(":")[1].startswith("/dev/dri/renderD")]


def _group_id(name: str, render_paths: Sequence[Path]) -> str:
    """Numeric gid on the host: the image's /etc/group rarely knows `render`, and a name it lacks fails the run."""
    if name == "render" and render_paths:
        return str(render_paths[0].stat().st_gid)
    try:
        return str(grp.getgrnam(name).gr_gid)
    except KeyError:
        return ""


def container_spec(entry: Entry, dev_root: Path = Path("/dev"), gpus: Sequence[Gpu] = ()) -> ContainerSpec:
    """The container for `entry` on `gpus` (the job's assignment: see host.assigned_gpus)."""
    policy = entry.target.device_policy
    devices, missing = device_mappings(policy.devices, dev_root, gpus)
    render_paths = [Path(mapping.split(":")[0]) for mapping in devices if mapping.split(":")[1].startswith("/dev/dri/renderD")]
    groups = [gid for gid in (_group_id(name, render_paths) for name in policy.group_add) if gid]
    cap_add, security_opt, ulimits = _extra_args(policy.extra_run_args)
    container_labels = {
        labels.MANAGED_LABEL: "true",
        labels.ROLE_LABEL: "validate",
        labels.ENTRY_LABEL: entry.id,
        labels.GPU_LABEL: entry.gpu,
        labels.DEVICES_LABEL: ",".join(d.split(":")[1] for d in devices),
    }
    return ContainerSpec(
        devices=devices,
        group_add=groups,
        shm_size=policy.shm_size,
        network_mode=policy.network,
        labels=container_labels,
        cap_add=cap_add,
        security_opt=security_opt,
        ulimits=ulimits,
        missing_devices=missing,
    )


def _extra_args(args: list[str]) -> tuple[list[str], list[str], list[Any]]:
    """The few `docker run` flags ROCm projects add (sglang CI: SYS_PTRACE, seccomp=unconfined, nofile)."""
    from docker.types import Ulimit

    cap_add, security_opt, ulimits = [], [], []
    for arg in args:
        flag, _, value = arg.partition("=")
        if flag == "--cap-add":
            cap_add.append(value)
        elif flag == "--security-opt":
            security_opt.append(value)
        elif flag == "--ulimit":
            name, _, limits = value.partition("=")
            soft, _, hard = limits.partition(":")
            ulimits.append(Ulimit(name=name, soft=int(soft), hard=int(hard or soft)))
        else:
            raise RunError(f"device_policy.extra_run_args: {arg!r} is not supported (use --cap-add=, --security-opt=, --ulimit=)")
    return cap_add, security_opt, ulimits


def probe_command(entry: Entry) -> list[str]:
    command = [
        "python",
        "-P",
        f"{CHECKS_DIR}/probe.py",
        "--json",
        "--expect-torch",
        entry.stack.torch.version,
        "--expect-aiter",
        entry.stack.aiter.label,
    ]
    if entry.is_amd:
        command += ["--expect-gfx", entry.gfx or "", "--expect-rocm"]
    else:
        command.append("--cpu-only")
    return command


def smoke_command(entry: Entry, target: Target) -> list[str]:
    command = [
        "python",
        "-P",
        f"{CHECKS_DIR}/smoke_layernorm.py",
        "--json",
        "--gate-max-kernels",
        str(entry.gates.k_norm_max_kernels),
        "--gate-min-speedup",
        str(entry.gates.k_norm_min_speedup),
        "--gate-min-ceiling-frac",
        str(entry.gates.prefill_min_ceiling_frac),
    ]
    if target.peak_bandwidth_tbs:
        command += ["--peak-bandwidth-gbs", str(target.peak_bandwidth_tbs * 1000)]
    if entry.is_amd:
        command += ["--device", "cuda", "--impl", "aiter-ck,aiter-triton,torch,torch-upcast"]
    else:
        command += ["--device", "cpu", "--cpu-only"]
    return command
