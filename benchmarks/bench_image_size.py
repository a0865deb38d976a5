"""Size of a built image, layer by layer, and the bytes of build caches left in it (issue 3: none may be).

Run: .venv/bin/python benchmarks/bench_image_size.py [IMAGE_REF]   (default: the `local` entry of matrix.yaml)
"""

from __future__ import annotations

import sys

from rocmci.engine import docker_client
from rocmci.plan import load_plan

# What a careless build leaves behind: pip's and apt's caches, temp files, aiter source trees, bytecode of the build.
LEFTOVERS = "/root/.cache /var/cache/apt/archives /var/lib/apt/lists /tmp /opt/rocmci/aiter-src"
SCRIPT = (
    f"find {LEFTOVERS} -mindepth 1 -printf '%s\\n' 2>/dev/null | awk '{{s+=$1}} END {{print s+0}}'; "
    "du -sb /opt/venv | cut -f1; "
    "find /opt/venv -name '*.pyc' -printf '%s\\n' | awk '{s+=$1} END {print s+0}'"
)


def main(argv: list[str]) -> int:
    plan = load_plan()
    ref = argv[0] if argv else plan.select("local")[0].image_ref(plan.repository)
    client = docker_client()
    image = client.images.get(ref)
    total = image.attrs["Size"]
    print(f"{ref}: {total / 1e9:.2f} GB")
    for layer in image.history():
        if layer["Size"] > 1_000_000:
            print(f"  {layer['Size'] / 1e6:9.1f} MB  {layer['CreatedBy'][-90:]}")
    leftover, venv, pyc = (
        int(x) for x in client.containers.run(ref, ["sh", "-c", SCRIPT], remove=True, network_mode="none").split()
    )
    print(f"venv (torch, aiter and their dependencies): {venv / 1e9:.2f} GB = {venv / total:.1%} of the image")
    print(f"build caches left ({LEFTOVERS}): {leftover} bytes = {leftover / total:.4%} of the image")
    print(
        f"bytecode in the venv: {pyc / 1e6:.1f} MB (PYTHONDONTWRITEBYTECODE=1 in the image; install_aiter.sh drops __pycache__)"
    )
    return 0 if leftover == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
