"""Build costs and reproducibility on the real engine, both backends in one run (issues 3, 15, 16 item 3).

For each backend (the Docker SDK's legacy builder, `docker buildx bake` through BuildKit):
1. a first build of the `local` entry with no layer cache (`--no-cache`: what a fresh builder does), pushed;
2. the same build again with nothing changed: it must build nothing (goal: under 5% of the first);
3. a build where only the aiter pin changed: every layer below aiter must come from the cache;
4. two more builds of the entry of step 1, its local image removed each time and pushed again: one without the
   layer cache (as another builder would), compared with step 1; then one with the cache (the same builder
   again), compared with the build before it: config digest (image id), layer diff ids, pushed manifest digest.

Nothing is removed but this run's own images; the engine's build caches are left alone (shared engine).
Run: .venv/bin/python benchmarks/bench_build.py [--backends sdk,bake]   (needs what scripts/setup-host starts)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rocmci.build import (
    BuildOptions,
    BuildResult,
    build_entries,
    buildx_available,
    cached_steps_below_aiter,
    ensure_local_base,
    fill_wheelhouse,
)
from rocmci.engine import docker_client
from rocmci.plan import ROOT, Entry, Plan, load_plan
from rocmci.progress import Progress

BENCH_PORT = 5170
AITER_DOUBLE = ROOT / "tests" / "fixtures" / "aiter_double"
MATRIX = """\
version: 1
repository: {repository}
targets:
  local:
    kind: cpu
    runs_on: [ubuntu-latest]
stacks:
  pypi-aiter:
    base_image: {{name: rocmci/debian, tag: bookworm, local: true}}
    python: "3.11"
    torch: {{version: 2.13.0, index: https://download.pytorch.org/whl/cpu}}
    aiter: {{pypi: 0.1.7.post2.dev18}}
  other-aiter:
    # TEST FIXTURE wheel (aiter test double) standing in for "a new aiter pin"; everything else is identical.
    base_image: {{name: rocmci/debian, tag: bookworm, local: true}}
    python: "3.11"
    torch: {{version: 2.13.0, index: https://download.pytorch.org/whl/cpu}}
    aiter: {{wheel: "file://{wheel}"}}
    fixture: true
matrix:
  gpu: [local]
  stack: [pypi-aiter, other-aiter]
"""


def timed_build(plan: Plan, entry: Entry, options: BuildOptions, progress: Progress) -> tuple[BuildResult, float]:
    started = time.perf_counter()
    [result] = build_entries(plan, [entry], options, progress)
    if result.status == "failed":
        raise SystemExit(f"{entry.id} ({options.backend}): {result.detail} (log: {result.log})")
    return result, time.perf_counter() - started


@dataclasses.dataclass(frozen=True)
class Built:
    config: str  # the image id: the config digest
    layers: tuple[str, ...]  # the layers' diff ids (digests of the uncompressed layer tars)
    pushed: str  # the manifest digest in the registry


def built(result: BuildResult) -> Built:
    image = docker_client().images.get(result.image_ref)
    return Built(image.id, tuple(image.attrs["RootFS"]["Layers"]), result.digest)


def rebuild(plan: Plan, entry: Entry, options: BuildOptions, progress: Progress) -> Built:
    """A build of `entry` whose local image was removed first, pushed again. `noprune`: the legacy builder's cache
    is the removed image's untagged parents, which a plain removal deletes too."""
    docker_client().images.remove(entry.image_ref(options.repository), noprune=True)
    result, _ = timed_build(plan, entry, dataclasses.replace(options, check_registry=False), progress)
    return built(result)


def compare(backend: str, what: str, this: Built, against: dict[str, Built]) -> None:
    print(f"[{backend}] {what}: config {this.config[7:19]}, pushed {this.pushed[7:19]}")
    for name, other in against.items():
        same_layers = sum(a == b for a, b in zip(this.layers, other.layers, strict=True))
        print(
            f"[{backend}]     vs {name}: config {'same' if this.config == other.config else 'differs'}, "
            f"layers {same_layers}/{len(this.layers)} same, image digest {'same' if this.pushed == other.pushed else 'differs'}"
        )


def bench(backend: str, plan: Plan, repository: str, wheelhouse: Path, logs: Path) -> bool:
    """Prints one backend's figures; True when the no-op and layer-reuse goals hold."""
    first, changed = plan.entries
    client = docker_client()
    quiet = Progress(stream=open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the benchmark
    # A port of its own: the file server's URL is a build arg, so a port taken by another build would miss the cache.
    options = BuildOptions.resolve(
        repository, backend=backend, wheelhouse=wheelhouse, log_dir=logs / backend, push=True, fileserver_port=BENCH_PORT
    )
    cold, cold_s = timed_build(plan, first, dataclasses.replace(options, no_cache=True), quiet)
    first_built = built(cold)
    noop, noop_s = timed_build(plan, first, options, quiet)
    other, other_s = timed_build(plan, changed, options, quiet)
    cached, below = cached_steps_below_aiter(other.log.read_text(), backend)
    size = client.images.get(cold.image_ref).attrs["Size"] / 1e9
    print(f"[{backend}] first build (no cache) + push of {first.id}: {cold_s:.1f} s ({size:.2f} GB image)")
    print(f"[{backend}] no-op rebuild: {noop_s:.2f} s = {noop_s / cold_s:.2%} of the first build (goal < 5%): {noop.detail}")
    print(
        f"[{backend}] aiter pin changed: {other_s:.1f} s = {other_s / cold_s:.1%} of the first build; "
        f"steps below aiter from cache: {cached}/{below}"
    )
    compare(backend, "first build", first_built, {})
    without_cache = rebuild(plan, first, dataclasses.replace(options, no_cache=True), quiet)
    compare(backend, "local image removed, rebuilt without cache", without_cache, {"the first build": first_built})
    with_cache = rebuild(plan, first, options, quiet)
    compare(backend, "local image removed, rebuilt with cache", with_cache, {"the build before it": without_cache})
    for image in {r.image_ref for r in (cold, other)}:
        client.images.remove(image, force=True)
    return noop_s / cold_s < 0.05 and cached == below


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sdk,bake")
    backends = parser.parse_args().backends.split(",")
    if "bake" in backends and not buildx_available():
        raise SystemExit("docker buildx is not installed (scripts/setup-host installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="rocmci-bench-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(AITER_DOUBLE)],
        check=True,
    )
    wheel = next(tmp.glob("amd_aiter-*.whl"))
    wheelhouse = ROOT / ".cache" / "wheelhouse"
    version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True).stdout
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, dockerd {version.strip()}")
    goals_met = True
    for backend in backends:
        repository = f"127.0.0.1:5000/rocmci-bench-{uuid.uuid4().hex[:6]}"
        (tmp / "matrix.yaml").write_text(MATRIX.format(repository=repository, wheel=wheel))
        plan = load_plan(tmp / "matrix.yaml")
        fill_wheelhouse([plan.entries[0]], wheelhouse, use_torch_index=False)
        ensure_local_base(plan.entries[0].stack.base_image, Progress())
        goals_met &= bench(backend, plan, repository, wheelhouse, tmp / "logs")
    return 0 if goals_met else 1


if __name__ == "__main__":
    sys.exit(main())
