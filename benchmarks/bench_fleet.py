"""What each fleet step moves over the network (issue 11): the `local` entry through images.yml's job scripts, with a
small counting proxy on loopback in front of the registry.

The registry's own log records response sizes only, so every request of a step goes through this proxy instead
(127.0.0.1:<port>, forwarding to 127.0.0.1:5000, byte for byte): it counts request and response bytes (head and body)
per step and per kind of request, blobs (layers, configs, the report) apart from manifests. The steps run as in
tests/test_fleet.py: plan, build on a builder engine of its own (push to staging), validate on a runner engine of its
own that starts empty (pull by digest), promote with no engine at all (blob mount + manifest put + report). Goals:
the builder pushes the image once, the runner pulls it once, promotion moves no layer bytes.

For scale it also prints what the workflow this replaces moved: the image as a `docker save | zstd -3` tarball,
uploaded once as an artifact and downloaded twice (validate, publish).

    .venv/bin/python benchmarks/bench_fleet.py [--wheelhouse .cache/wheelhouse] [--seed-from IMAGE]

`--seed-from` copies an image of the local entry's content tag from the shared engine into the builder engine first
(set-up, like its base image), so the build step finds it and only pushes it: the bytes counted are the same, and a
busy 2-core machine is spared a 20-minute build. Without it the builder builds for real.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.engines import own_engine  # noqa: E402
from tests.fleet import Repositories, fleet_matrix, hand_over, run_step  # noqa: E402

REGISTRY = ("127.0.0.1", 5000)
BASE_IMAGE = "rocmci/debian:bookworm"
DIGEST = re.compile(r"sha256(?::|%3A)([0-9a-f]{64})", re.IGNORECASE)
METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS")
CHUNK = 1 << 16


# ---------------------------------------------------------------- the counting proxy


@dataclass
class Tally:
    requests: int = 0
    sent: int = 0  # client -> registry (request heads and bodies)
    received: int = 0  # registry -> client (response heads and bodies)


@dataclass
class Counter:
    """Bytes per (step, kind of request), and per blob digest; the benchmark names the step before it runs."""

    step: str = "set-up"
    tallies: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))
    blobs: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))  # (step, digest or "")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, digest: str, sent: int, received: int) -> None:
        with self.lock:
            for tally in (self.tallies[(self.step, kind)], *([self.blobs[(self.step, digest)]] if kind == "blob" else [])):
                tally.requests += 1
                tally.sent += sent
                tally.received += received

    def blob_bytes(self, step: str, digests: set[str]) -> int:
        """Bytes of the step's blob requests for these digests, or of no known digest (a PATCH of an upload)."""
        return sum(
            t.sent + t.received for (name, digest), t in list(self.blobs.items()) if name == step and digest in digests | {""}
        )

    def of(self, step: str, kind: str | None = None) -> Tally:
        total = Tally()
        for (name, what), tally in list(self.tallies.items()):
            if name == step and kind in (None, what):
                total.requests += tally.requests
                total.sent += tally.sent
                total.received += tally.received
        return total


def kind_of(method: str, path: str) -> str:
    """blob: layer, config or report bytes (GET/PUT/PATCH of /blobs/); manifest: /manifests/; mount: a cross-repository
    mount (POST /blobs/uploads/?mount=); other: ping, HEAD of a blob, upload sessions, tag lists."""
    if "/manifests/" in path:
        return "manifest"
    if method == "POST" and "mount=" in path:
        return "mount"
    if "/blobs/" in path and (method in ("GET", "PATCH") or (method == "PUT" and "/blobs/uploads/" in path)):
        return "blob"
    return "other"


def digest_in(path: str) -> str:
    """The blob digest a path names (/blobs/sha256:<hex>, or ?digest=sha256%3A<hex> when an upload ends), else ""."""
    found = DIGEST.search(path)
    return f"sha256:{found.group(1).lower()}" if found else ""


def read_head(stream) -> bytes:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline(CHUNK)
        if not line:
            return b""
        head += line
    return head


def headers_of(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}


def relay_body(source, sink: socket.socket, headers: dict[str, str], until_close: bool = False) -> int:
    """Copy one message body (chunked, Content-Length or to the end of the stream), byte for byte; returns its size."""
    moved = 0
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = source.readline(CHUNK)
            sink.sendall(size_line)
            moved += len(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = source.readline(CHUNK)
                    sink.sendall(trailer)
                    moved += len(trailer)
                    if trailer in (b"\r\n", b""):
                        return moved
            moved += _copy(source, sink, size + 2)
    if "content-length" in headers:
        return _copy(source, sink, int(headers["content-length"]))
    if until_close:
        while data := source.read1(CHUNK):
            sink.sendall(data)
            moved += len(data)
    return moved


def _copy(source, sink: socket.socket, size: int) -> int:
    left = size
    while left:
        data = source.read(min(CHUNK, left))
        if not data:
            raise ConnectionError("stream ended inside a body")
        sink.sendall(data)
        left -= len(data)
    return size


class ProxyHandler(socketserver.StreamRequestHandler):
    counter: Counter

    def handle(self) -> None:
        upstream = socket.create_connection(REGISTRY)
        replies = upstream.makefile("rb")
        try:
            while self._one_exchange(upstream, replies):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            replies.close()
            upstream.close()

    def _one_exchange(self, upstream: socket.socket, replies) -> bool:
        head = read_head(self.rfile)
        if not head or not head.startswith(METHODS):
            return False  # closed, or a TLS hello: the engine then falls back to plain HTTP
        method, path = head.split(b" ", 2)[:2]
        kind, digest = kind_of(method.decode(), path.decode()), digest_in(path.decode())
        request_headers = headers_of(head)
        upstream.sendall(head)
        sent = len(head) + relay_body(self.rfile, upstream, request_headers)
        received = 0
        while True:
            reply = read_head(replies)
            if not reply:
                self.counter.add(kind, digest, sent, received)
                return False
            self.connection.sendall(reply)
            received += len(reply)
            status = int(reply.split(b" ", 2)[1])
            if status >= 200:
                break
        reply_headers = headers_of(reply)
        closes = "close" in (reply_headers.get("connection", "") + request_headers.get("connection", "")).lower()
        if method != b"HEAD" and status not in (204, 304):
            received += relay_body(replies, self.connection, reply_headers, until_close=True)
        self.counter.add(kind, digest, sent, received)
        return not closes


class CountingProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, counter: Counter):
        handler = type("Handler", (ProxyHandler,), {"counter": counter})
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class ImageSize:
    layers: int  # compressed, as pushed
    config: int
    digests: frozenset[str]  # of the layers and the config

    @property
    def total(self) -> int:
        return self.layers + self.config


def image_size(repository: str, digest: str) -> ImageSize:
    """What the image's manifest names, read from the registry directly (not through the proxy, not counted)."""
    import requests

    host, name = repository.split("/", 1)
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    doc = requests.get(f"http://{host}/v2/{name}/manifests/{digest}", headers={"Accept": accept}, timeout=30).json()
    blobs = [*doc["layers"], doc["config"]]
    return ImageSize(sum(b["size"] for b in doc["layers"]), doc["config"]["size"], frozenset(b["digest"] for b in blobs))


def artifact_bytes(engine_host: str, reference: str) -> int:
    """The old hand-off: `docker save <ref> | zstd -T0 -3` (what images.yml uploaded as an artifact), its size."""
    save = subprocess.Popen(["docker", "-H", engine_host, "save", reference], stdout=subprocess.PIPE)
    zstd = subprocess.Popen(["zstd", "-T0", "-3", "-q", "-c"], stdin=save.stdout, stdout=subprocess.PIPE)
    assert save.stdout is not None and zstd.stdout is not None
    save.stdout.close()
    size = sum(len(chunk) for chunk in iter(lambda: zstd.stdout.read(CHUNK), b""))
    if zstd.wait() != 0 or save.wait() != 0:
        sys.exit("bench_fleet: docker save | zstd failed")
    return size


def mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB" if n >= 2**20 else f"{n / 1024:,.1f} KiB"


def check(step, label: str) -> None:
    if step.code != 0:
        sys.exit(f"bench_fleet: {label} failed (exit {step.code}):\n{step.log[-4000:]}")


def run(wheelhouse: Path, seed: str | None) -> int:
    from rocmci.engine import docker_client

    counter = Counter()
    work = Path(tempfile.mkdtemp(prefix="rocmci-bench-fleet-"))
    with CountingProxy(counter) as proxy, own_engine("rocmci-bb-") as builder, own_engine("rocmci-br-") as runner:
        builder.load_from(docker_client(), BASE_IMAGE)
        name = f"rocmci-bench-fleet-{uuid.uuid4().hex[:8]}"
        repos = Repositories(staging=f"{proxy.address}/{name}-staging", release=f"{proxy.address}/{name}-release")
        matrix = fleet_matrix(work / "matrix.yaml", repos)
        common = {"MATRIX": str(matrix), "GITHUB_REF": "refs/heads/main", "GITHUB_EVENT_NAME": "schedule"}

        counter.step = "plan"
        plan = run_step("plan", work / "plan", "unix:///nonexistent.sock", {**common, "ROCMCI_GPUS": "local"})
        check(plan, "plan")
        [item] = json.loads(plan.outputs["matrix"])["include"]
        [row] = json.loads(plan.outputs["builds"])["include"]
        # ROCMCI_MIN_FREE_GB: the runner's disk check is sized for 20-30 GB ROCm images; the local one is 1.3 GB.
        entry_env = {**common, "GPU": item["gpu"], "ENTRY": item["id"], "BUILD": item["build"], "ROCMCI_MIN_FREE_GB": "3"}
        if seed:
            builder.load_from(docker_client(), seed)
            seeded = docker_client().images.get(seed).id  # the load keeps one of the image's names: tag it by id
            builder.client().images.get(seeded).tag(*row["staging_ref"].rsplit(":", 1))

        counter.step = "build"
        built = work / "builder-reports"
        build = run_step(
            "build",
            work / "build",
            builder.host,
            {**entry_env, "ENTRY": row["id"], "KIND": row["kind"], "REPORTS": str(built), "WHEELHOUSE": str(wheelhouse)},
        )
        check(build, "build")
        digest = build.outputs["digest"]

        counter.step = "validate"
        validated = work / "runner-reports"
        hand_over(built, validated, f"builds/{item['build']}.json")
        check(run_step("validate", work / "validate", runner.host, {**entry_env, "REPORTS": str(validated)}), "validate")
        counter.step = "report"
        check(run_step("report", work / "report", "unix:///nonexistent.sock", {**entry_env, "REPORTS": str(validated)}), "report")

        counter.step = "promote"
        promoted = work / "promote-reports"
        hand_over(validated, promoted, item["id"], f"builds/{item['build']}.json")
        dead = f"unix://{work / 'no-engine.sock'}"
        promote = run_step("promote", work / "promote", dead, {**entry_env, "REPORTS": str(promoted)})
        check(promote, "promote")
        counter.step = "done"

        size = image_size(repos.staging.replace(proxy.address, "127.0.0.1:5000"), digest)
        tarball = artifact_bytes(builder.host, row["staging_ref"])
        published = json.loads((promoted / item["id"] / "publish.json").read_text())
    shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"builder: {'pushed the seeded image ' + seed if seed else 'built the image'}")
    return summarize(counter, size, tarball, digest, published["report_digest"], item["id"])


STEPS = ("plan", "build", "validate", "report", "promote")


def summarize(counter: Counter, size: ImageSize, tarball: int, digest: str, report_digest: str, entry_id: str) -> int:
    image = size.total
    print(f"entry {entry_id}, image {digest[:19]}: {mib(size.layers)} compressed layers + {mib(size.config)} config")
    print(f"{'step':<9} {'requests':>8} {'sent':>12} {'received':>12} {'blobs':>12} {'manifests':>10} {'mounts':>6}  moved/image")
    for step in STEPS:
        total, blobs, manifests = counter.of(step), counter.of(step, "blob"), counter.of(step, "manifest")
        print(
            f"{step:<9} {total.requests:>8} {mib(total.sent):>12} {mib(total.received):>12} {mib(blobs.sent + blobs.received):>12} "
            f"{mib(manifests.sent + manifests.received):>10} {counter.of(step, 'mount').requests:>6}  "
            f"{(total.sent + total.received) / image:.6f}"
        )
    push, pull, promotion = counter.of("build"), counter.of("validate"), counter.of("promote")
    image_bytes_promoted = counter.blob_bytes("promote", set(size.digests))
    everything = sum(counter.of(step).sent + counter.of(step).received for step in STEPS)
    print(f"builder pushed {push.sent / image:.3f}x the image; runner pulled {pull.received / image:.3f}x the image")
    print(
        f"promotion: {mib(promotion.sent + promotion.received)} in {promotion.requests} requests "
        f"({(promotion.sent + promotion.received) / image:.6f}x the image), of it {image_bytes_promoted} bytes of the image's "
        f"layers/config; the report {report_digest[:19]} is attached"
    )
    print(
        f"the artifact hand-off this replaces: docker save | zstd -3 = {mib(tarball)}, moved 3 times = {mib(3 * tarball)}; "
        f"the registry hand-off, all steps: {mib(everything)} ({everything / (3 * tarball):.2f}x that)"
    )
    ok = 0.95 <= push.sent / image <= 1.10 and 0.95 <= pull.received / image <= 1.10 and image_bytes_promoted == 0
    print("goals (push once, pull once, promotion moves no layer byte):", "met" if ok else "MISSED")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheelhouse", default=str(ROOT / ".cache" / "wheelhouse"), help="offline wheels for the local stack")
    parser.add_argument(
        "--seed-from", help="an image of the local entry's content tag on the shared engine: push it, build nothing"
    )
    args = parser.parse_args()
    if not Path(args.wheelhouse).is_dir():
        sys.exit(f"bench_fleet: --wheelhouse {args.wheelhouse}: not a directory (`invoke wheelhouse --gpu local` fills it)")
    sys.exit(run(Path(args.wheelhouse), args.seed_from))


if __name__ == "__main__":
    main()
