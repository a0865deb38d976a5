"""What signing and verification cost: `publish --sign` per image, and finding the image to pull with and without
`--verify` over N signed candidates, against the real local registry with the pinned cosign (2.5.0).

The reports are written by this benchmark (figures invented, marked `"benchmark_fixture"`); what is timed is cosign and
the registry round trips. Prints the ratio of the verified search to the plain one, measured in this run.

    .venv/bin/python benchmarks/bench_attest.py [--images 6] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import rocmci.publish as publishing
import rocmci.pull as pulling
from rocmci import attest, oci
from rocmci.engine import docker_client

REGISTRY = os.environ.get("ROCMCI_TEST_REGISTRY", "127.0.0.1:5000")


def small_image(engine, ref: str) -> None:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY p /p\n"), ("p", uuid.uuid4().bytes)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    from docker.errors import BuildError

    for attempt in range(3):  # the shared engine: another session's prune can drop the legacy builder's intermediates
        context.seek(0)
        try:
            engine.images.build(fileobj=context, custom_context=True, tag=ref, network_mode="none", rm=True)
            return
        except BuildError:
            if attempt == 2:
                raise


def documents(digest: str, repository: str, day: int) -> tuple[dict, dict]:
    entry = {"id": "mi355x-bench", "gpu": "mi355x", "torch": "2.13.0", "aiter": "0.1.20"}
    record = {
        "benchmark_fixture": "written by benchmarks/bench_attest.py, not measured",
        "entry": entry,
        "image": {"digest": digest},
        "verdict": "pass",
        "k_norm": {"graph_us": 10.0, "bandwidth_frac": 0.5},
        "report_time": f"2026-11-{day:02d}T00:00:00Z",
    }
    statement = {"subject": [{"name": repository, "digest": {"sha256": digest.split(":")[1]}}], "predicate": {}}
    return record, statement


def cleanup(engine, client: oci.RegistryClient, name: str, repository: str) -> None:
    """Delete what this benchmark pushed (images, reports, indexes, cosign's .att) and its local images."""
    for tag in client.list_tags(name):
        head = client.head_manifest(name, tag)
        if head:
            client.delete_manifest(name, head.digest)
    for image in engine.images.list(name=repository):
        engine.images.remove(image.id, force=True)


def best_of(runs: int, function) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    engine = docker_client()
    repository = f"{REGISTRY}/rocmci-bench-attest-{uuid.uuid4().hex[:8]}"
    client, name = oci.client_for(repository)
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"cosign: {attest.cosign_binary()} ({attest.COSIGN_PIN})")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COSIGN_PASSWORD"] = "bench"
        subprocess.run([attest.cosign_binary(), "generate-key-pair"], cwd=tmp, check=True, capture_output=True)
        hooks = attest.PublishHooks(attest.Signer(str(Path(tmp) / "cosign.key")))
        sign_times = []
        for i in range(args.images):
            tag = f"mi355x-bench-{i}"
            small_image(engine, f"{repository}:{tag}-local")
            item = publishing.PublishItem(tag, "mi355x", f"{repository}:{tag}-local", tag, Path(tmp) / tag)

            def documents_for(_item, digest, repo, day=i + 1):
                return documents(digest, repo, day)

            published = publishing.publish_one(
                item, repository, engine=engine, client=client, documents_for=documents_for, log=lambda _l: None, hooks=None
            )
            digest = published.reference.split("@")[1]
            started = time.perf_counter()
            hooks.after_attach(published.reference, oci.as_documents(documents(digest, repository, i + 1)), lambda _l: None)
            sign_times.append(time.perf_counter() - started)
            print(f"[{i + 1}/{args.images}] {published.reference}: signed in {sign_times[-1]:.2f} s")
        identity = attest.Identity(key=str(Path(tmp) / "cosign.pub"))
        plain = best_of(args.runs, lambda: pulling.find_validated(repository, "mi355x", client=client))
        verified = best_of(
            args.runs,
            lambda: pulling.find_validated(
                repository, "mi355x", client=client, accept=attest.PullVerifier(repository, "mi355x", identity)
            ),
        )
    cleanup(engine, client, name, repository)
    print(f"sign (cosign attest, key, offline): median {sorted(sign_times)[len(sign_times) // 2]:.2f} s per image")
    print(f"find the image to pull over {args.images} candidates: plain {plain:.2f} s, --verify {verified:.2f} s")
    print(f"--verify costs {verified / plain:.1f}x the plain search, {(verified - plain) / args.images:.2f} s per candidate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
