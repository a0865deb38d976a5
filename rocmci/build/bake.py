"""The bake backend: `docker buildx bake` with a generated bake file (BuildKit: what GitHub Actions runners have)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from rocmci.build.options import BuildOptions, build_time_labels
from rocmci.errors import BuildError
from rocmci.plan import ROOT, Entry, shared_builds
from rocmci.progress import Progress

DOCKERFILE = "images/Dockerfile"
BAKE_GROUP = "default"
BUILDKIT_STEP = re.compile(r"^#\d+ \[\s*\d+/\d+\] ")


def _target_name(entry: Entry) -> str:
    return entry.id.replace(".", "_")


def bake_file(entries: list[Entry], options: BuildOptions, fetch_url: str = "") -> dict:
    """A `docker buildx bake` file: one target per shared build (stack x gfx), the pins as build args and as OCI labels."""
    targets = {}
    for entry in (group[0] for group in shared_builds(entries).values()):
        ref = entry.image_ref(options.repository)
        cache_ref = f"{options.repository}:buildcache-{entry.gpu}"
        targets[_target_name(entry)] = {
            "context": str(ROOT),
            "dockerfile": DOCKERFILE,
            "args": {**entry.build_args, "ROCMCI_FETCH_URL": fetch_url, "ROCMCI_BAKE_CA": "1" if options.bake_ca else "0"},
            "tags": [ref],
            "labels": build_time_labels(entry, options),
            "network": "host",
            "output": ["type=registry" if options.push else "type=docker"],
        }
        if options.registry_cache:
            # Needs a buildx builder whose driver exports caches (docker-container; the default `docker` driver cannot).
            targets[_target_name(entry)] |= {
                "cache-from": [f"type=registry,ref={cache_ref}"],
                "cache-to": [f"type=registry,ref={cache_ref},mode=max"],
            }
    return {"group": {BAKE_GROUP: {"targets": list(targets)}}, "target": targets}


def buildx_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False).returncode == 0


def buildx_driver() -> str:
    """The driver of the current buildx builder (`docker` drives the engine's own BuildKit)."""
    result = subprocess.run(["docker", "buildx", "inspect"], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("Driver:"):
            return line.split(":", 1)[1].strip()
    raise BuildError(f"docker buildx inspect: no builder ({(result.stderr or result.stdout).strip()})")


def bake_build(entry: Entry, options: BuildOptions, fetch_url: str, log, progress: Progress) -> str:
    """`docker buildx bake` with the generated bake file (BuildKit: what GitHub Actions runners have). Returns the
    pushed manifest digest from `--metadata-file` ("" without --push)."""
    with tempfile.TemporaryDirectory(prefix="rocmci-bake-") as tmp:
        bake_path, metadata_path = Path(tmp) / "bake.json", Path(tmp) / "metadata.json"
        bake_path.write_text(json.dumps(bake_file([entry], options, fetch_url)))
        command = ["docker", "buildx", "bake", "--allow", "network.host", "--progress", "plain"] + (
            ["--no-cache"] if options.no_cache else []
        )
        command += ["--metadata-file", str(metadata_path), "-f", str(bake_path), _target_name(entry)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        try:
            assert process.stdout is not None
            for text in process.stdout:
                log.write(text)
                if BUILDKIT_STEP.match(text):
                    progress.line(entry.id, "building", text.rstrip())
        finally:
            if process.poll() is None:
                process.terminate()
            returncode = process.wait()
        if returncode != 0:
            raise BuildError(f"docker buildx bake exited {returncode}")
        metadata = json.loads(metadata_path.read_text()).get(_target_name(entry), {})
    return metadata.get("containerimage.digest", "") if options.push else ""
