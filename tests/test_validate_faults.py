"""Faults during `invoke validate` (issue 9 item 3): the Docker engine killed with SIGKILL mid-step, and a second Ctrl-C
while the check container is being removed.

The engine killed here is a SECOND dockerd of this test's own (own data root, exec root, pidfile and socket, started as
scripts/setup-host starts the shared one), killed by its pid; the shared engine is only read from (its small base image
is copied over with `docker save`/`load`). The image validated is a TEST FIXTURE: the base image with a `python` that
hangs in one chosen step and a `sleep` that ignores SIGTERM (as a stuck GPU process does), so a stop must time out.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rocmci.plan import Entry, load_plan
from rocmci.report import verdict_for
from tests.helpers import ROOT

BASE_IMAGE = "rocmci/debian:bookworm"
ROLE_FILTER = {"label": "io.rocmci.role=validate"}
HANGING_PYTHON = b"""#!/bin/sh
# TEST FIXTURE: stands in for python; hangs in the check named in /opt/rocmci-hang, answers {} elsewhere.
[ "$(cat /opt/rocmci-hang)" = "$(basename "$2" .py)" ] && exec /bin/sleep 600
echo '{}'
"""
DEAF_SLEEP = b"""#!/bin/sh
# TEST FIXTURE: the container's main process ignores SIGTERM, so `docker stop` waits its full timeout.
trap '' TERM
exec /bin/sleep "$@"
"""


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

        return docker.DockerClient(base_url=self.host, timeout=120)

    def validate_containers(self) -> list:
        return self.client().containers.list(all=True, filters=ROLE_FILTER)


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


def _teardown(engine: SecondEngine) -> None:
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


@pytest.fixture(scope="module")
def second_engine(engine) -> Iterator[SecondEngine]:
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed (scripts/setup-host installs docker.io)")
    own = SecondEngine(Path(tempfile.mkdtemp(prefix="rocmci-e2-", dir="/tmp")))
    try:
        own.start()
        own.client().images.load(b"".join(engine.images.get(BASE_IMAGE).save(named=True)))
        yield own
    finally:
        _teardown(own)


def _hanging_image(engine: SecondEngine, step: str, ref: str) -> None:
    """Build the test fixture image on the second engine, tagged as the entry's image."""
    engine.ensure_running()  # an earlier test may have left it killed
    files = {
        "Dockerfile": f"FROM {BASE_IMAGE}\nCOPY python sleep /usr/local/bin/\nCOPY hang /opt/rocmci-hang\n".encode(),
        "python": HANGING_PYTHON,
        "sleep": DEAF_SLEEP,
        "hang": step.encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    repository, tag = ref.rsplit(":", 1)
    image, _ = engine.client().images.build(fileobj=buffer, custom_context=True, rm=True, network_mode="none")
    image.tag(repository, tag)


@pytest.fixture
def local_entry() -> Entry:
    return load_plan().select("local")[0]


def _previous_pass(reports: Path, entry: Entry) -> None:
    """An earlier run's passing result for the entry (the hand-written fixture, re-pointed at today's tag)."""
    target = reports / entry.id
    shutil.copytree(ROOT / "tests" / "data" / "reports" / "local-cpu-torch2.13.0-aiter0.1.7.post2.dev18", target)
    result = json.loads((target / "result.json").read_text())
    result["entry"] = entry.summary()
    (target / "result.json").write_text(json.dumps(result))
    assert verdict_for(target, entry.summary()).verdict == "pass", "precondition: an older pass is in place"


def _validate(engine: SecondEngine, repository: str, reports: Path) -> subprocess.Popen:
    env = {**os.environ, "DOCKER_HOST": engine.host, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "invoke", "validate", "--gpu", "local", "--registry", repository, "--reports", str(reports)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(process: subprocess.Popen, engine: SecondEngine, marker: str) -> list[str]:
    """Read output until the step starts, then until its process runs inside the check container."""
    seen: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if f"] {marker}:" in line:
            break
    else:
        pytest.fail("validate ended before the step started:\n" + "".join(seen))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = [c for c in engine.validate_containers() if c.status == "running"]
        if running and any("sleep 600" in row[-1] for row in running[0].top().get("Processes") or []):
            return seen
        time.sleep(0.3)
    pytest.fail("the hanging step never ran in the check container:\n" + "".join(seen))


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize(("step", "marker"), [("probe", "probing"), ("smoke_layernorm", "smoke")])
def test_engine_killed_mid_step_ends_as_an_error_result(second_engine, local_entry, tmp_path, step, marker):
    repository = f"127.0.0.1:5000/rocmci-faults-{uuid.uuid4().hex[:8]}"
    _hanging_image(second_engine, step, local_entry.image_ref(repository))
    reports = tmp_path / "reports"
    _previous_pass(reports, local_entry)
    process = _validate(second_engine, repository, reports)
    seen = _wait_for_step(process, second_engine, marker)
    second_engine.kill()
    output = "".join(seen) + process.communicate(timeout=180)[0]
    assert process.returncode == 1, output
    assert "Traceback" not in output, output
    step_name = "probe" if step == "probe" else "smoke"
    result = json.loads((reports / local_entry.id / "result.json").read_text())
    assert f"running the {step_name} step failed" in result["error"], result["error"]
    assert "could not be removed" in result["error"] and "invoke clean" in result["error"], result["error"]
    verdict = verdict_for(reports / local_entry.id, local_entry.summary())
    assert verdict.verdict == "error", verdict
    assert [p.name for p in reports.iterdir()] == [local_entry.id], "no temporary directory may be left in reports/"
    assert result["started"] != "2026-05-04T09:05:20Z" and not (reports / local_entry.id / "smoke.json").exists()

    second_engine.start()  # the engine is back: it removes the auto-remove check container itself
    deadline = time.monotonic() + 60
    while second_engine.validate_containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not second_engine.validate_containers(), "the check container must be gone once the engine is back"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_ctrl_c_does_not_leave_the_container(second_engine, local_entry, tmp_path, first):
    repository = f"127.0.0.1:5000/rocmci-faults-{uuid.uuid4().hex[:8]}"
    _hanging_image(second_engine, "probe", local_entry.image_ref(repository))
    reports = tmp_path / "reports"
    _previous_pass(reports, local_entry)
    process = _validate(second_engine, repository, reports)
    seen = _wait_for_step(process, second_engine, "probing")
    process.send_signal(first)
    time.sleep(0.5)  # the first interrupt is being handled: the container is on its way out
    process.send_signal(signal.SIGINT)
    output = "".join(seen) + process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output, output
    [line] = [x for x in output.splitlines() if x.startswith(f"{local_entry.id}: validation interrupted by ")]
    assert first.name in line, line
    assert "while running the probe step" in output and "the check container was removed" in output, output
    assert not second_engine.validate_containers(), "the check container must be removed before the process ends"
    assert not reports.exists() or not list(reports.iterdir()), "neither the older pass nor a temporary directory may stay"
    assert verdict_for(reports / local_entry.id, local_entry.summary()).verdict == "not-run"


# ---------------------------------------------------------------- bad inputs (issue 9 item 5): one line, non-zero exit


def _invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "invoke", *args]
    return subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)


def _one_line_error(run: subprocess.CompletedProcess[str], message: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and run.stderr.strip().splitlines() == [message], run.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("clean", "--keep", "abc", "--dry-run"), {}, "--keep: expected a whole number >= 0 (got 'abc')"),
        (("clean", "--keep", "1.5", "--dry-run"), {}, "--keep: expected a whole number >= 0 (got '1.5')"),
        (
            ("build", "--gpu", "local", "--print"),
            {"ROCMCI_FILESERVER_PORT": "abc"},
            "ROCMCI_FILESERVER_PORT: expected a TCP port 1-65535 (got 'abc')",
        ),
        (("matrix", "--file", "/dev/zero"), {}, "/dev/zero: not a regular file: give the path of a YAML matrix file"),
    ],
    ids=["keep-abc", "keep-1.5", "fileserver-port", "dev-zero"],
)
def test_bad_values_give_one_line(args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    _one_line_error(_invoke(*args, env=env), message)


def test_a_bad_fileserver_port_breaks_no_other_task() -> None:
    run = _invoke("matrix", "--gpu", "local", env={"ROCMCI_FILESERVER_PORT": "abc"})
    assert run.returncode == 0 and "local-cpu-torch" in run.stdout, run.stderr


def test_a_fifo_as_matrix_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "matrix.yaml"
    os.mkfifo(fifo)
    _one_line_error(
        _invoke("matrix", "--file", str(fifo), timeout=30), f"{fifo}: not a regular file: give the path of a YAML matrix file"
    )


def test_an_oversized_matrix_file_is_refused(tmp_path: Path) -> None:
    from rocmci.plan import MAX_MATRIX_BYTES

    big = tmp_path / "matrix.yaml"
    big.write_bytes(b"# padding\n" * (MAX_MATRIX_BYTES // 10 + 1))
    _one_line_error(_invoke("matrix", "--file", str(big)), f"{big}: larger than {MAX_MATRIX_BYTES} bytes: not a matrix file")
