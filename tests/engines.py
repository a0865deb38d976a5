"""Docker engines of a test's own: a dockerd started by the test (own data root, exec root, pidfile and unix socket,
`--bridge=none --iptables=false`, as scripts/setup-host starts the shared one) and stopped by its pid. Tests use one to
kill an engine mid-step (tests/test_validate_faults.py) or to stand for separate machines of a fleet (a builder and a
GPU runner, tests/test_fleet.py). The shared engine is only ever read from: images are copied over with save/load.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROLE_FILTER = {"label": "io.rocmci.role=validate"}


@dataclass
class SecondEngine:
    """A dockerd of this test's own, under a short /tmp path (unix socket paths are limited to 108 bytes)."""

    root: Path
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "dockerd.log"

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def start(self) -> None:
        command = [
            "dockerd",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host={self.host}",
            "--bridge=none",
            "--iptables=false",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if subprocess.run(["docker", "-H", self.host, "info"], capture_output=True, check=False).returncode == 0:
                return
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.5)
        pytest.fail(f"the second dockerd did not start: {self.log.read_text()[-3000:]}")

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()

    def kill(self) -> None:
        """SIGKILL by pid, as a crashing engine dies."""
        assert self.process is not None
        containerd = self.root / "exec" / "containerd" / "containerd.pid"
        containerd_pid = int(containerd.read_text()) if containerd.exists() else None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        # Its containerd dies with it; a restart before that process is reaped would wait on its dead socket.
        deadline = time.monotonic() + 60
        while containerd_pid and Path(f"/proc/{containerd_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=300)

    def validate_containers(self) -> list:
        return self.client().containers.list(all=True, filters=ROLE_FILTER)

    def load_from(self, source, reference: str) -> None:
        """Copy one image from another engine's client (e.g. the shared engine's base image): set-up, not a pipeline step."""
        self.client().images.load(b"".join(source.images.get(reference).save(named=True)))


def _own_processes(root: Path) -> list[int]:
    """containerd and shims this engine started: their command lines name its exec root."""
    mine = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(root).encode() in (proc / "cmdline").read_bytes():
                    mine.append(int(proc.name))
            except OSError:
                continue
    return mine


def teardown(engine: SecondEngine) -> None:
    """Remove the engine's containers, stop it by its pid, end what it started, unmount and delete its root."""
    with suppress(Exception):
        engine.ensure_running()
        for container in engine.client().containers.list(all=True):
            container.remove(force=True)
    engine.stop()
    for pid in _own_processes(engine.root):
        with suppress(Exception):
            os.kill(pid, signal.SIGKILL)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in reversed([m for m in mounts if m.startswith(str(engine.root))]):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(engine.root, ignore_errors=True)


@contextmanager
def own_engine(prefix: str) -> Iterator[SecondEngine]:
    """A started engine of this test's own under /tmp/<prefix>XXXX, torn down however the block ends."""
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed (scripts/setup-host installs docker.io)")
    own = SecondEngine(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
    try:
        own.start()
        yield own
    finally:
        teardown(own)
