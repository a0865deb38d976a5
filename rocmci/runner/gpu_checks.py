"""Doctor's GPU checks: the GPU model by PCI id, the KFD topology against the target's gfx, rocminfo and amd-smi as
optional cross-checks, and what torch in an image sees through the device flags."""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rocmci import labels
from rocmci.runner.checks import Check, Runner, Status, find_tool, run_command, tail
from rocmci.validate.host import KFD_TOPOLOGY, HostGpus, read_kfd_topology

ROCMINFO_CANDIDATES = ("rocminfo", "/opt/rocm/bin/rocminfo")
AMD_SMI_CANDIDATES = ("amd-smi", "/opt/rocm/bin/amd-smi")

# Runs inside the image as `python -P -c`: what torch sees through the device flags, as one JSON line.
TORCH_PROBE = (
    "import json, torch\n"
    "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
    "gfx = [torch.cuda.get_device_properties(i).gcnArchName.split(':')[0] for i in range(n)]\n"
    "print(json.dumps({'hip': torch.version.hip, 'torch': torch.__version__, 'count': n, 'gfx': gfx}))\n"
)


@dataclass(frozen=True)
class GpuModel:
    """One GPU model of rocmci/resources/gpus.yaml."""

    key: str
    name: str
    gfx: str
    device_ids: frozenset[int]


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
            f"`{tool}` exited {code}: {tail(out)}",
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
            f"`{tool} list --json` exited {code}: {tail(out)}",
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
        labels.MANAGED_LABEL: "true",
        labels.ROLE_LABEL: "doctor",
        labels.GPU_LABEL: gpu or "",
        labels.DEVICES_LABEL: ",".join(d.split(":")[1] for d in devices),
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
            f"{image}: probe exited {code}: {tail(out)}",
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
