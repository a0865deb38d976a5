"""Build-time gates: the build fails here when the image does not hold what its pins promise.

Runs as the last build step (standard library + the installed torch only), then writes /opt/rocmci/versions.json.
Inputs are the build args, as environment variables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

Failure = str


def public_version(version: str) -> str:
    """'2.13.0+rocm7.2' -> '2.13.0': wheel indexes add a local label to the pinned release."""
    return version.split("+", 1)[0]


def check_pip() -> list[Failure]:
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    return [] if result.returncode == 0 else [f"pip check failed: {result.stdout.strip() or result.stderr.strip()}"]


def check_python(expected: str) -> list[Failure]:
    found = ".".join(platform.python_version_tuple()[:2])
    return [] if found == expected else [f"python is {found}, the stack pins {expected}"]


def check_torch(expected: str, rocm: str) -> tuple[list[Failure], dict]:
    try:
        import torch
    except Exception as exc:  # any import failure is a failed gate
        return [f"torch does not import: {type(exc).__name__}: {exc}"], {}
    found = {"version": torch.__version__, "hip": torch.version.hip, "cuda": torch.version.cuda}
    failures = []
    # A pin with a local label (AMD's 2.8.0+rocm7.0.0.lw.git<sha>) names one build: compare it whole.
    if torch.__version__ != expected and ("+" in expected or public_version(torch.__version__) != expected):
        failures.append(f"torch is {torch.__version__}, the stack pins {expected}")
    if rocm:
        if not torch.version.hip:
            failures.append(
                f"torch {torch.__version__} is not a ROCm build (torch.version.hip is None; cuda={torch.version.cuda})"
            )
        elif not torch.version.hip.startswith(rocm):
            failures.append(f"torch was built for HIP {torch.version.hip}, the stack pins ROCm {rocm}")
    elif torch.version.hip or torch.version.cuda:
        failures.append(f"torch {torch.__version__} is a GPU build on a CPU-only stack")
    return failures, found


def check_no_cuda_wheels(rocm: str) -> list[Failure]:
    if not rocm:
        return []
    cuda = sorted(d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-"))
    return [f"CUDA wheels installed on a ROCm stack: {', '.join(cuda)}"] if cuda else []


def check_aiter(expected: str, source: str) -> tuple[list[Failure], dict]:
    try:
        found = md.version("amd-aiter")
    except md.PackageNotFoundError:
        return ["amd-aiter is not installed"], {}
    record = json.loads(Path("/opt/rocmci/aiter-source.json").read_text())
    info = {"version": found, "source": source, "spec": record.get("spec"), "commit": record.get("commit") or None}
    if public_version(found) != public_version(expected) and found != expected:
        return [f"amd-aiter is {found}, the stack pins {expected}"], info
    return [], info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, required=True)
    args = parser.parse_args()
    env = os.environ.get
    rocm = env("ROCM_VERSION", "")
    failures = check_pip() + check_python(env("PYTHON_VERSION", "")) + check_no_cuda_wheels(rocm)
    torch_failures, torch_info = check_torch(env("TORCH_VERSION", ""), rocm)
    aiter_failures, aiter_info = check_aiter(env("AITER_VERSION", ""), env("AITER_SOURCE", ""))
    failures += torch_failures + aiter_failures
    for failure in failures:
        print(f"rocmci gate FAILED: {failure}", file=sys.stderr)
    if failures:
        return 1
    versions = {
        "schema": "rocmci.versions/v1",
        "target": env("ROCMCI_TARGET"),
        "gfx": env("GPU_ARCHS") or None,
        "base_image": env("BASE_IMAGE"),
        "rocm": rocm or None,
        "python": platform.python_version(),
        "torch": {**torch_info, "pin": env("TORCH_VERSION"), "index": env("TORCH_INDEX_URL")},
        "aiter": {
            **aiter_info,
            "pin": env("AITER_VERSION"),
            "kernels": "prebuilt" if env("PREBUILD_KERNELS") == "1" else "jit-at-first-call",
        },
        "fixture": env("ROCMCI_FIXTURE") == "1",
        "pip_constraint": env("PIP_CONSTRAINT"),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.write.write_text(json.dumps(versions, indent=2) + "\n")
    print(f"rocmci gates passed: torch {torch_info['version']}, amd-aiter {aiter_info['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
