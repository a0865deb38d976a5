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
import re
import subprocess
import sys
from pathlib import Path

Failure = str
TRITON_DISTS = ("pytorch-triton-rocm", "triton", "pytorch-triton", "triton-rocm")
GIT_HASH_IN_VERSION = re.compile(r"\+g([0-9a-f]{7,40})")
# What setuptools_scm makes of a clone without tags: 0.0 bumped (v8) or aiter's fallback_version 0.1.0 bumped (v10).
NO_RELEASE_VERSION = re.compile(r"0\.1(\.1)?\.dev[0-9]+\+g[0-9a-f]+.*")
CONSTRAINTS = Path("/opt/rocmci/constraints.txt")
AITER_RECORD = Path("/opt/rocmci/aiter-source.json")


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


def check_aiter(expected: str, source: str, commit: str) -> tuple[list[Failure], dict]:
    try:
        found = md.version("amd-aiter")
    except md.PackageNotFoundError:
        return ["amd-aiter is not installed"], {}
    record = json.loads(AITER_RECORD.read_text())
    built_from = GIT_HASH_IN_VERSION.search(found)
    info = {
        "version": found,
        "source": source,
        "spec": record.get("spec"),
        "commit": record.get("commit") or None,
        "version_commit": built_from.group(1) if built_from else None,
    }
    if commit:
        return check_aiter_commit(found, commit, record), info
    if public_version(found) != public_version(expected) and found != expected:
        return [f"amd-aiter is {found}, the stack pins {expected}"], info
    return [], info


def check_aiter_commit(found: str, commit: str, record: dict) -> list[Failure]:
    """aiter pinned by commit: setuptools_scm writes the commit it built from into the version (`+g<hash>`), except
    at a tagged commit, whose version is the bare release."""
    failures = []
    checked_out = record.get("commit") or ""
    if checked_out and checked_out != commit:
        failures.append(f"the aiter checkout is at {checked_out}, the stack pins {commit}")
    if NO_RELEASE_VERSION.fullmatch(found) and not record.get("describe"):
        failures.append(
            f"amd-aiter {found} names no release: it was built from a clone without tags (setuptools_scm's fallback); "
            "fetch the tags with the commit"
        )
    built_from = GIT_HASH_IN_VERSION.search(found)
    at_tag = re.fullmatch(r".+-0-g[0-9a-f]+", record.get("describe") or "") is not None
    if built_from is None and not (at_tag and checked_out == commit):
        failures.append(f"amd-aiter {found} names no commit (no +g<hash>): it was not built from a checkout of {commit}")
    elif built_from and not commit.startswith(built_from.group(1)):
        failures.append(f"amd-aiter {found} was built from commit {built_from.group(1)}, the stack pins {commit}")
    return failures


def triton_dists(lines: list[str] | None = None) -> dict[str, str]:
    """Installed Triton distributions (name -> version), or those named in `pip freeze` lines."""
    if lines is None:
        found = {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version for d in md.distributions()}
    else:
        found = dict(line.strip().lower().replace("_", "-").split("==", 1) for line in lines if "==" in line)
    return {name: found[name] for name in TRITON_DISTS if name in found}


def describe_tritons(dists: dict[str, str]) -> str:
    return " and ".join(f"{name} {version}" for name, version in dists.items()) or "no Triton"


def check_triton(source: str, version: str, before: dict[str, str], after: dict[str, str]) -> list[Failure]:
    """The Triton the stack chose: the torch index's (what stood after torch was installed) or aiter's triton X."""
    if source == "aiter":
        if after == {"triton": after.get("triton", "")} and public_version(after["triton"]) == version:
            return []
        return [
            f"the stack takes triton {version} from aiter's build (AITER_USE_SYSTEM_TRITON=0), but {describe_tritons(after)} "
            "is installed"
        ]
    if after == before:
        return []
    added = {name: v for name, v in after.items() if before.get(name) != v}
    removed = {name: v for name, v in before.items() if after.get(name) != v}
    if added and removed:
        change = f"replaced {describe_tritons(removed)} with {describe_tritons(added)}"
    elif removed:
        change = f"removed {describe_tritons(removed)} and installed no Triton"
    elif before:
        change = f"installed {describe_tritons(added)} beside {describe_tritons(before)}"
    else:
        change = f"installed {describe_tritons(added)} where the torch index installed no Triton"
    return [
        f"aiter's build {change}; the stack keeps the torch index's Triton (matrix.yaml `triton: torch`, built with "
        "AITER_USE_SYSTEM_TRITON=1, which aiter's setup.py honours only when a Triton is installed)"
    ]


def triton_info(source: str, after: dict[str, str]) -> dict:
    name, version = next(iter(after.items()), (None, None))
    rocm = bool(name and ("rocm" in name or "rocm" in (version or "")))
    return {"dist": name, "version": version, "rocm_build": rocm if name else None, "source": source}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, required=True)
    args = parser.parse_args()
    env = os.environ.get
    rocm = env("ROCM_VERSION", "")
    failures = check_python(env("PYTHON_VERSION", "")) + check_no_cuda_wheels(rocm)
    torch_failures, torch_info = check_torch(env("TORCH_VERSION", ""), rocm)
    aiter_failures, aiter_info = check_aiter(env("AITER_VERSION", ""), env("AITER_SOURCE", ""), env("AITER_COMMIT", ""))
    tritons = triton_dists()
    triton_source = env("TRITON_SOURCE", "torch")
    before = triton_dists(CONSTRAINTS.read_text().splitlines()) if CONSTRAINTS.is_file() else {}
    triton_failures = check_triton(triton_source, env("TRITON_VERSION", ""), before, tritons)
    failures += torch_failures + aiter_failures + triton_failures + check_pip()
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
        "triton": {**triton_info(triton_source, tritons), "pin": env("TRITON_VERSION") or None, "torch_index": before or None},
        "fixture": env("ROCMCI_FIXTURE") == "1",
        "pip_constraint": env("PIP_CONSTRAINT"),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.write.write_text(json.dumps(versions, indent=2) + "\n")
    print(f"rocmci gates passed: torch {torch_info['version']}, amd-aiter {aiter_info['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
