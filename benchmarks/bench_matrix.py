"""Time parsing, validating and expanding a generated 1,000-entry matrix.yaml (issue 2: under one second).

    python benchmarks/bench_matrix.py [--runs N]

Two layouts of the same 1,000 entries: 10 targets x 100 stacks through the gpu/stack axes, and the same pairs
as 1,000 `include` items. Each figure is the best of N runs of `load_plan` (read, YAML, schema, checks,
expansion with tags, build-context digest), timed with time.perf_counter; the parts are best-of-N too.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rocmci import plan as rocmci_matrix
from rocmci.plan import yamlfile

BUDGET_S = 1.0
AMD_TARGETS = {"mi300x": ("gfx942", 5.3), "mi325x": ("gfx942", 6.0), "mi350x": ("gfx950", 8.0), "mi355x": ("gfx950", 8.0)}
ROCM = ("7.1", "7.2")
TORCH = ("2.11.0", "2.12.0", "2.12.1", "2.13.0", "2.13.1")
AITER_REFS = tuple(f"v0.1.{n}" for n in range(11, 21))


def _target(gfx: str, bandwidth: float, name: str) -> dict[str, Any]:
    return {
        "gfx": gfx,
        "peak_bandwidth_tbs": bandwidth,
        "runs_on": ["self-hosted", "linux", name],
        "device_policy": {"devices": ["/dev/kfd", "/dev/dri"], "group_add": ["video", "render"], "shm_size": "16g"},
    }


def _stack(rocm: str, torch: str, ref: str) -> dict[str, Any]:
    return {
        "base_image": {"name": "rocm/dev-ubuntu-24.04", "tag": f"{rocm}-complete"},
        "rocm": rocm,
        "python": "3.12",
        "torch": {"version": torch, "index": f"https://download.pytorch.org/whl/rocm{rocm}"},
        "aiter": {"git": {"repo": "https://github.com/ROCm/aiter", "ref": ref}},
    }


def generate(layout: str = "axes") -> str:
    """A valid matrix.yaml of 10 AMD targets x 100 stacks = 1,000 entries, as axes or as include items."""
    targets = {name: _target(gfx, bw, name) for name, (gfx, bw) in AMD_TARGETS.items()}
    for n in range(6):
        gfx = "gfx942" if n % 2 else "gfx950"
        targets[f"lab{n}-{gfx}"] = _target(gfx, 5.0 + n, f"lab{n}")
    stacks = {
        f"rocm{rocm}-torch{torch}-aiter{ref}": _stack(rocm, torch, ref) for rocm in ROCM for torch in TORCH for ref in AITER_REFS
    }
    if layout == "axes":
        axes: dict[str, Any] = {"gpu": list(targets), "stack": list(stacks)}
    else:
        axes = {"include": [{"gpu": gpu, "stack": stack} for gpu in targets for stack in stacks]}
    document = {"version": 1, "targets": targets, "stacks": stacks, "matrix": axes}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=200)


def best_of(runs: int, action: Callable[[], Any]) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def measure(path: Path, runs: int) -> dict[str, float]:
    text = path.read_text()
    matrix, lines = rocmci_matrix.parse_matrix(text, str(path))
    context = rocmci_matrix.BuildContext(rocmci_matrix.ROOT)
    entries = rocmci_matrix.expand(matrix, lines, str(path), context)
    assert len(entries) == 1000, len(entries)
    return {
        "total": best_of(runs, lambda: rocmci_matrix.load_plan(path)),
        "parse+validate": best_of(runs, lambda: rocmci_matrix.parse_matrix(text, str(path))),
        "expand": best_of(
            runs, lambda: rocmci_matrix.expand(matrix, lines, str(path), rocmci_matrix.BuildContext(rocmci_matrix.ROOT))
        ),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per figure; the best is reported (default 7)")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, {_cpu_model()}, Python {platform.python_version()}, PyYAML {yaml.__version__}")
    loaders = {"libyaml": yamlfile.LOADERS, "pure-Python PyYAML": yamlfile.LOADERS[-1:]}
    if not getattr(yaml, "__with_libyaml__", False):
        loaders = {"pure-Python PyYAML": yamlfile.LOADERS}
    worst, shipped_loaders = 0.0, yamlfile.LOADERS
    with tempfile.TemporaryDirectory() as scratch:
        for layout in ("axes", "include"):
            path = Path(scratch) / f"matrix-{layout}.yaml"
            path.write_text(generate(layout))
            for loader_name, loader_classes in loaders.items():
                yamlfile.LOADERS = loader_classes
                figures = measure(path, args.runs)
                worst = max(worst, figures["total"])
                parts = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in figures.items() if name != "total")
                print(
                    f"1000 entries ({layout}, {path.stat().st_size // 1024} KiB, {loader_name}): "
                    f"{figures['total']:.3f} s ({figures['total'] / BUDGET_S:.2f}x of the {BUDGET_S:g} s budget; {parts})"
                )
    yamlfile.LOADERS = shipped_loaders
    return 0 if worst < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
