"""The entry loop of `invoke validate`: per entry, the image looked up, the check container given the job's GPUs,
probe then smoke, and the result moved into reports/<entry id>/ in one rename. With `parallel` > 1, up to that many
entries run at once in threads, each AMD entry on one GPU of the pool."""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rocmci.engine import docker_client
from rocmci.errors import RunError
from rocmci.plan import PIN_LABELS, ROOT, Entry, Plan
from rocmci.progress import Progress
from rocmci.validate.container import Cleanup, check_container, interrupts_as_exceptions, run_step, signals_deferred
from rocmci.validate.host import Gpu, assigned_gpus, gpu_pool, requested_render_nodes
from rocmci.validate.results import RunResult, StepOutcome, discard, write_result
from rocmci.validate.spec import container_spec, probe_command, smoke_command

if TYPE_CHECKING:
    from docker.models.images import Image


@dataclass(frozen=True)
class RunOptions:
    repository: str
    reports_dir: Path = ROOT / "reports"
    step_timeout_s: int = 900
    dev_root: Path = Path("/dev")
    sys_root: Path = Path("/sys")
    pull_missing: bool = True
    render_nodes: str | None = None  # `--render-nodes` as given; None reads ROCMCI_RENDER_NODES
    parallel: int = 1
    image_refs: dict[str, str] = field(default_factory=dict)  # entry id -> `<repo>@<digest>` (validate --pull)

    def image_ref(self, entry: Entry) -> str:
        return self.image_refs.get(entry.id) or entry.image_ref(self.repository)


class Interrupted(RunError):
    """Ctrl-C or SIGTERM during a validation: says what was interrupted and what was cleaned up."""

    exit_code = 130


class Cancel:
    """Set by the main thread on Ctrl-C during a parallel run: workers stop and write no result; their containers are
    removed by the main thread at once (a worker blocked in a step only returns when its container goes)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._cleanups: list[Cleanup] = []
        self._lock = threading.Lock()

    def track(self, cleanup: Cleanup) -> None:
        with self._lock:
            self._cleanups.append(cleanup)

    def set(self, signal_name: str) -> None:
        self.signal = signal_name
        with self._lock:
            containers = [c.container_id for c in self._cleanups if c.container_id]
        for container_id in containers:
            with suppress(Exception):  # gone already, or the engine is down: the worker's own clean-up reports it
                docker_client().containers.get(container_id).remove(force=True)

    def check(self) -> None:
        if self.signal:
            raise KeyboardInterrupt(self.signal)


def _ensure_image(image_ref: str, pull: bool, progress: Progress, entry_id: str) -> Image:
    from docker.errors import APIError, ImageNotFound, NotFound

    client = docker_client()
    try:
        return client.images.get(image_ref)
    except ImageNotFound:
        if not pull:
            raise RunError(f"image {image_ref} is not built (run `invoke build` first)") from None
    progress.line(entry_id, "pulling", image_ref)
    try:
        return client.images.pull(image_ref)
    except (APIError, NotFound) as exc:
        raise RunError(f"image {image_ref} is neither built here nor pullable: {exc.explanation or exc}") from None


def repository_of(image_ref: str) -> str:
    """`host:5000/repo` of `host:5000/repo:tag` or `host:5000/repo@sha256:...`."""
    if "@" in image_ref:
        return image_ref.split("@", 1)[0]
    name, _, tag = image_ref.rpartition(":")
    return name if name and "/" not in tag else image_ref


def _image_facts(image: Image, image_ref: str) -> dict[str, Any]:
    """Read while the engine is up: id, registry digest and rocmci's pin labels (the report checks them against the plan)."""
    repository = repository_of(image_ref)
    digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if d.startswith(repository + "@")]
    if "@" in image_ref:  # validated by digest: that digest, whichever others the image also has
        digests = [image_ref.split("@", 1)[1]]
    labels = image.labels or {}
    return {
        "id": image.id,
        "digest": digests[0] if digests else None,
        "labels": {k: v for k, v in sorted(labels.items()) if k in PIN_LABELS and isinstance(v, str)},
    }


def _gpus_for(entry: Entry, options: RunOptions) -> tuple[Gpu, ...]:
    if not entry.is_amd:
        return ()
    return assigned_gpus(requested_render_nodes(options.render_nodes), options.dev_root, options.sys_root).gpus


def validate_entry(
    entry: Entry, options: RunOptions, progress: Progress, gpus: Sequence[Gpu] | None = None, cancel: Cancel | None = None
) -> RunResult:
    """Validate one entry on `gpus` (None: the GPUs assigned by --render-nodes / ROCMCI_RENDER_NODES, see host.py)."""
    gpus = _gpus_for(entry, options) if gpus is None else tuple(gpus)
    final_dir = options.reports_dir / entry.id
    options.reports_dir.mkdir(parents=True, exist_ok=True)
    discard(final_dir)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.id}.", dir=options.reports_dir))
    result = RunResult(entry.id, options.image_ref(entry), final_dir)
    cleanup = Cleanup()
    if cancel is not None:
        cancel.track(cleanup)
    try:
        _run_checks(entry, options, progress, result, work, cleanup, gpus)
        if cancel is not None:
            cancel.check()
        result.phase = "writing the result"
        write_result(work, entry, result, options.dev_root)
        discard(final_dir)
        os.replace(work, final_dir)
    except KeyboardInterrupt as interrupt:
        shutil.rmtree(work, ignore_errors=True)
        name = interrupt.args[0] if interrupt.args else "SIGINT"
        how = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM (a cancelled job)"}.get(name, name)
        container = cleanup.problem or ("the check container was removed" if cleanup.container_id else "no container had started")
        raise Interrupted(
            f"{entry.id}: validation interrupted by {how} while {result.phase}; {container}; "
            "no result was written (any earlier one was removed first, so the entry reads not-run)"
        ) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    progress.line(entry.id, "validated" if result.status == "ok" else result.status.upper(), str(final_dir))
    return result


def _run_checks(
    entry: Entry, options: RunOptions, progress: Progress, result: RunResult, work: Path, cleanup: Cleanup, gpus: Sequence[Gpu]
) -> None:
    try:
        result.phase = "looking up the image"
        result.image = _image_facts(_ensure_image(result.image_ref, options.pull_missing, progress, entry.id), result.image_ref)
        spec = container_spec(entry, options.dev_root, gpus)
        result.render_nodes = [path.rsplit("/", 1)[1] for path in spec.render_nodes]
        if entry.is_amd and spec.missing_devices:
            result.error = (
                f"no AMD GPU on this host: {', '.join(spec.missing_devices)} missing; "
                f"{entry.gpu} can only be validated on a runner with {entry.gfx} GPUs (see `invoke doctor`)"
            )
            progress.line(entry.id, "probing", "without GPU devices (the verdict cannot be a pass)")
        elif entry.is_amd:
            progress.line(entry.id, "gpus", ", ".join(g.describe() for g in gpus))
        result.phase = "starting the check container"
        with check_container(result.image_ref, spec, cleanup) as container:
            result.phase = "running the probe step"
            progress.line(entry.id, "probing", " ".join(probe_command(entry)[2:]))
            result.probe = run_step(
                container, probe_command(entry), options.step_timeout_s, work / "probe.json", work / "probe.log"
            )
            if result.error:
                result.smoke = StepOutcome(None, 0.0, "", skipped=result.error)
            else:
                result.phase = "running the smoke step"
                progress.line(entry.id, "smoke", " ".join(smoke_command(entry, entry.target)[2:]))
                result.smoke = run_step(
                    container, smoke_command(entry, entry.target), options.step_timeout_s, work / "smoke.json", work / "smoke.log"
                )
            result.phase = "removing the check container"
    except run_failures() as exc:
        fold_error(result, exc)
    if cleanup.problem:
        result.error = "; ".join(filter(None, [result.error, cleanup.problem]))


def run_failures() -> tuple[type[BaseException], ...]:
    """What a check run folds into an error result; imported when a run starts (the task list loads no Docker SDK)."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    return (RunError, DockerException, RequestException, OSError)


def fold_error(result: RunResult, exc: BaseException) -> None:
    """The engine went away, a socket timed out, the image could not start: an error result, never a traceback."""
    detail = str(exc) if isinstance(exc, RunError) else f"{result.phase} failed: {type(exc).__name__}: {exc}"
    result.error = "; ".join(filter(None, [result.error, detail]))


class SerializedProgress(Progress):
    """Progress lines from several threads: each line whole, on the clock of the progress it wraps."""

    def __init__(self, inner: Progress):
        super().__init__(inner.stream, inner.width)
        self.started = inner.started
        self._lock = threading.Lock()

    def line(self, entry_id: str, phase: str, message: str = "") -> None:
        with self._lock:
            super().line(entry_id, phase, message)


def validate_entries(plan: Plan, entries: list[Entry], options: RunOptions, progress: Progress | None = None) -> list[RunResult]:
    if not entries:
        raise RunError(f"{plan.source}: no entries selected")
    if options.parallel < 1:
        raise RunError(f"--parallel: expected a whole number >= 1 (got {options.parallel})")
    progress = progress or Progress(width=max(len(e.id) for e in entries))
    request = requested_render_nodes(options.render_nodes)
    needs_gpu = any(e.is_amd for e in entries)
    with interrupts_as_exceptions():
        if options.parallel == 1 or len(entries) == 1:
            gpus = assigned_gpus(request, options.dev_root, options.sys_root).gpus if needs_gpu else ()
            return [validate_entry(entry, options, progress, gpus) for entry in entries]
        pool = gpu_pool(request, options.dev_root, options.sys_root) if needs_gpu else []
        return _validate_in_parallel(entries, options, SerializedProgress(progress), pool)


def _validate_in_parallel(entries: list[Entry], options: RunOptions, progress: Progress, pool: list[Gpu]) -> list[RunResult]:
    """Up to options.parallel entries at once; an AMD entry waits for a free GPU of `pool` and gets that one only."""
    free: queue.Queue[Gpu] = queue.Queue()
    for gpu in pool:
        free.put(gpu)
    cancel = Cancel()
    workers = min(options.parallel, len(entries))
    shown = ", ".join(g.describe() for g in pool) if pool else "none needed" if not any(e.is_amd for e in entries) else "none"
    progress.line("parallel", f"up to {workers} entries at once", f"GPUs, one per AMD entry: {shown}")

    def one(entry: Entry) -> RunResult | None:
        gpu = free.get() if entry.is_amd and pool else None
        try:
            if cancel.signal:
                return None
            return validate_entry(entry, options, progress, (gpu,) if gpu else (), cancel)
        finally:
            if gpu is not None:
                free.put(gpu)

    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validate")
    futures = [executor.submit(one, entry) for entry in entries]
    try:
        results = [future.result() for future in futures]
    except KeyboardInterrupt as interrupt:
        with signals_deferred():
            cancel.set(interrupt.args[0] if interrupt.args else "SIGINT")
            executor.shutdown(wait=True, cancel_futures=True)
        raise _interrupted(entries, futures, cancel.signal or "SIGINT") from None
    executor.shutdown(wait=True)
    return [r for r in results if r is not None]


def _interrupted(entries: list[Entry], futures: list[Future], signal_name: str) -> Interrupted:
    stopped = [
        str(future.exception())
        for future in futures
        if future.done() and not future.cancelled() and isinstance(future.exception(), Interrupted)
    ]
    finished = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None and f.result() is not None)
    lines = stopped or [f"validation interrupted by {signal_name}"]
    return Interrupted(
        "\n".join([*lines, f"{finished} of {len(entries)} entries had finished (their results stand); the rest were not run"])
    )
