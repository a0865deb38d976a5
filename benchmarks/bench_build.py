"""Build costs on the real engine, measured in one run (issue 3):

1. a first (cold) build of the `local` entry, base image already made;
2. the same `invoke build` again with nothing changed: it must build nothing (goal: under 5% of the first);
3. a build where only the aiter pin changed: every layer below aiter must come from the cache.

Run: .venv/bin/python benchmarks/bench_build.py   (needs the engine and registry that scripts/setup-host starts)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rocmci.build import BuildOptions, build_entries, ensure_local_base, fill_wheelhouse
from rocmci.engine import docker_client
from rocmci.matrix import ROOT, load_plan
from rocmci.progress import Progress

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


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def aiter_step_reuse(log: Path) -> tuple[int, int]:
    """(cached, total) build steps before the aiter install step."""
    steps = re.split(r"^Step \d+/\d+ : ", log.read_text(), flags=re.M)[1:]
    below = []
    for step in steps:
        if step.startswith("RUN sh /opt/rocmci/install_aiter.sh"):
            break
        below.append(step)
    instructions = [s for s in below if not s.startswith(("FROM", "ARG"))]
    return sum("Using cache" in s for s in instructions), len(instructions)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="rocmci-bench-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(AITER_DOUBLE)],
        check=True,
    )
    wheel = next(tmp.glob("amd_aiter-*.whl"))
    repository = f"127.0.0.1:5000/rocmci-bench-{uuid.uuid4().hex[:6]}"
    (tmp / "matrix.yaml").write_text(MATRIX.format(repository=repository, wheel=wheel))
    plan = load_plan(tmp / "matrix.yaml")
    first, changed = plan.entries
    wheelhouse = ROOT / ".cache" / "wheelhouse"
    fill_wheelhouse([first], wheelhouse, use_torch_index=False)
    ensure_local_base(first.stack.base_image, Progress())
    client = docker_client()
    # Cold: no rocmci image of the local target may hold layers the first build could reuse.
    for image in client.images.list(filters={"label": "io.rocmci.gpu=local"}):
        client.images.remove(image.id, force=True)
    options = BuildOptions.resolve(repository, wheelhouse=wheelhouse, log_dir=tmp / "logs")
    quiet = Progress(stream=open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the benchmark

    [cold], cold_s = timed(build_entries, plan, [first], options, quiet)
    [noop], noop_s = timed(build_entries, plan, [first], options, quiet)
    [other], other_s = timed(build_entries, plan, [changed], options, quiet)
    assert cold.status == "built" and noop.status == "skipped" and other.status == "built", (cold, noop, other)
    cached, below = aiter_step_reuse(other.log)
    size = client.images.get(cold.image_ref).attrs["Size"] / 1e9

    print(f"first build of {first.id}: {cold_s:.1f} s ({size:.2f} GB image)")
    print(f"no-op rebuild: {noop_s:.2f} s = {noop_s / cold_s:.2%} of the first build (goal < 5%): {noop.detail}")
    print(
        f"aiter pin changed: {other_s:.1f} s = {other_s / cold_s:.1%} of the first build; "
        f"steps below aiter from cache: {cached}/{below}"
    )
    return 0 if noop_s / cold_s < 0.05 and cached == below else 1


if __name__ == "__main__":
    sys.exit(main())
