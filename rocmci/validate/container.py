"""The check container: created with the entry's spec, steps run in it by `exec`, and removed however the run
ends (an error, Ctrl-C, SIGTERM, a dying engine); signals become exceptions so clean-up takes one path."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rocmci.engine import docker_client
from rocmci.validate.results import StepOutcome
from rocmci.validate.spec import ContainerSpec

if TYPE_CHECKING:
    from docker.models.containers import Container

STOP_TIMEOUT_S = 10
REMOVE_WAIT_S = 30


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) takes the same cleanup path as Ctrl-C; the interrupt carries the signal's name."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = _set_handlers(raise_interrupt)
    try:
        yield
    finally:
        _restore_handlers(previous)


def _set_handlers(handler: Callable[[int, object], None]) -> dict[int, object]:
    previous: dict[int, object] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    return previous


def _restore_handlers(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


@contextmanager
def signals_deferred() -> Iterator[list[str]]:
    """While the check container is removed, Ctrl-C/SIGTERM only get noted: a second Ctrl-C must not leave it behind."""
    received: list[str] = []

    def note(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        print("rocmci: removing the check container first (it will not be left behind)", file=sys.stderr, flush=True)

    previous = _set_handlers(note)
    try:
        yield received
    finally:
        _restore_handlers(previous)


@dataclass
class Cleanup:
    """What became of the check container; `problem` says why it could not be removed."""

    container_id: str = ""
    problem: str | None = None


@contextmanager
def check_container(image_ref: str, spec: ContainerSpec, cleanup: Cleanup | None = None) -> Iterator[Container]:
    cleanup = cleanup if cleanup is not None else Cleanup()
    client = docker_client()
    container = client.containers.create(
        image_ref,
        command=["sleep", "infinity"],
        init=True,
        detach=True,
        # The engine removes it by itself when it comes back after dying mid-run (it cannot be asked while down).
        auto_remove=True,
        labels=spec.labels,
        devices=spec.devices,
        group_add=spec.group_add,
        shm_size=spec.shm_size,
        network_mode=spec.network_mode,
        cap_add=spec.cap_add or None,
        security_opt=spec.security_opt or None,
        ulimits=spec.ulimits or None,
        environment={"PYTHONUNBUFFERED": "1"},
        volumes=spec.volumes or None,
        tmpfs=spec.tmpfs or None,
        working_dir=spec.working_dir,
        entrypoint=spec.entrypoint,
    )
    cleanup.container_id = container.id
    graceful = True
    try:
        container.start()
        yield container
    except BaseException:
        graceful = False  # interrupted or failed: kill at once instead of waiting out a stop timeout
        raise
    finally:
        with signals_deferred() as received:
            cleanup.problem = _remove(container, graceful)
        if received and graceful:
            raise KeyboardInterrupt(received[0])


def _remove(container: Container, graceful: bool) -> str | None:
    """Stop (when graceful) and remove the container, waiting until it is gone; a problem is returned, never raised."""
    from docker.errors import APIError, DockerException, NotFound
    from requests.exceptions import RequestException

    try:
        if graceful:
            with suppress(APIError):
                container.stop(timeout=STOP_TIMEOUT_S)
        with suppress(APIError):  # 404 gone, 409 auto-removal already under way
            container.remove(force=True)
        deadline = time.monotonic() + REMOVE_WAIT_S
        while time.monotonic() < deadline:
            container.reload()
            time.sleep(0.2)
        return f"the check container {container.short_id} was still there {REMOVE_WAIT_S}s after its removal; `invoke clean` removes it"
    except NotFound:
        return None
    except (DockerException, RequestException) as exc:
        return (
            f"the check container {container.short_id} could not be removed ({type(exc).__name__}: the engine is unreachable): "
            "the engine removes it when it is back (auto-remove), `invoke clean` removes any left"
        )


def run_step(container: Container, command: list[str], timeout_s: int, out_json: Path, out_log: Path) -> StepOutcome:
    started = time.monotonic()
    wrapped = ["timeout", "--kill-after=10", str(timeout_s), *command]
    exit_code, (stdout, stderr) = container.exec_run(wrapped, demux=True)
    out_json.write_bytes(stdout or b"")
    out_log.write_bytes((" ".join(command) + "\n").encode() + (stderr or b""))
    if exit_code == 124:
        with out_log.open("a") as log:
            log.write(f"\nrocmci: step timed out after {timeout_s}s\n")
    return StepOutcome(exit_code=exit_code, wall_s=time.monotonic() - started, log=out_log.name)
