"""Runs checks/ inside each built image on the right device: one container per entry, probe then smoke,
the container removed even on failure or Ctrl-C, raw results stored under reports/<entry id>/."""

from __future__ import annotations

import datetime as dt
import grp
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.models.images import Image
from docker.types import Ulimit
from requests.exceptions import RequestException

from rocmci.engine import MANAGED_LABEL, docker_client
from rocmci.errors import RunError
from rocmci.plan import PIN_LABELS, ROOT, Entry, Plan, Target
from rocmci.progress import Progress, table

CHECKS_DIR = "/opt/rocmci/checks"
RESULT_SCHEMA = "rocmci.result/v1"
STOP_TIMEOUT_S = 10
REMOVE_WAIT_S = 30


@dataclass(frozen=True)
class RunOptions:
    repository: str
    reports_dir: Path = ROOT / "reports"
    step_timeout_s: int = 900
    dev_root: Path = Path("/dev")
    pull_missing: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """What `docker run` gets for one entry: the target's device policy resolved on this host."""

    devices: list[str]
    group_add: list[str]
    shm_size: str
    network_mode: str
    labels: dict[str, str]
    cap_add: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    ulimits: list[Ulimit] = field(default_factory=list)
    missing_devices: list[str] = field(default_factory=list)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # `invoke check --image`: rocmci's checks, read-only
    tmpfs: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/tmp"
    entrypoint: list[str] | None = None  # [""]: the image's own ENTRYPOINT (a server, say) is not run


@dataclass
class StepOutcome:
    exit_code: int | None
    wall_s: float
    log: str
    skipped: str | None = None

    def as_json(self) -> dict:
        return {"exit_code": self.exit_code, "wall_s": round(self.wall_s, 3), "log": self.log, "skipped": self.skipped}


@dataclass
class RunResult:
    entry_id: str
    image_ref: str
    directory: Path
    probe: StepOutcome | None = None
    smoke: StepOutcome | None = None
    error: str | None = None
    image: dict[str, Any] = field(default_factory=dict)
    started: str = field(default_factory=lambda: _now())
    phase: str = "preparing"

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        codes = [s.exit_code for s in (self.probe, self.smoke) if s and s.skipped is None]
        return "ok" if codes and all(c == 0 for c in codes) else "checks failed"


# ---------------------------------------------------------------- device policy


def render_nodes(dev_root: Path) -> list[Path]:
    return sorted((dev_root / "dri").glob("renderD*"))


def _group_id(name: str, dev_root: Path) -> str:
    """Numeric gid on the host: the image's /etc/group rarely knows `render`, and a name it lacks fails the run."""
    if name == "render":
        nodes = render_nodes(dev_root)
        if nodes:
            return str(nodes[0].stat().st_gid)
    try:
        return str(grp.getgrnam(name).gr_gid)
    except KeyError:
        return ""


def container_spec(entry: Entry, dev_root: Path = Path("/dev")) -> ContainerSpec:
    policy = entry.target.device_policy
    devices, missing = [], []
    for device in policy.devices:
        host_path = dev_root / Path(device).relative_to("/dev")
        if device == "/dev/dri" and host_path.exists() and not render_nodes(dev_root):
            missing.append("/dev/dri/renderD*")  # a /dev/dri without render nodes gives HIP no GPU
        elif host_path.exists():
            devices.append(f"{host_path}:{device}:rwm")
        else:
            missing.append(device)
    groups = [gid for gid in (_group_id(name, dev_root) for name in policy.group_add) if gid]
    cap_add, security_opt, ulimits = _extra_args(policy.extra_run_args)
    labels = {
        MANAGED_LABEL: "true",
        "io.rocmci.role": "validate",
        "io.rocmci.entry": entry.id,
        "io.rocmci.gpu": entry.gpu,
        "io.rocmci.devices": ",".join(d.split(":")[1] for d in devices),
    }
    return ContainerSpec(
        devices=devices,
        group_add=groups,
        shm_size=policy.shm_size,
        network_mode=policy.network,
        labels=labels,
        cap_add=cap_add,
        security_opt=security_opt,
        ulimits=ulimits,
        missing_devices=missing,
    )


def _extra_args(args: list[str]) -> tuple[list[str], list[str], list[Ulimit]]:
    """The few `docker run` flags ROCm projects add (sglang CI: SYS_PTRACE, seccomp=unconfined, nofile)."""
    cap_add, security_opt, ulimits = [], [], []
    for arg in args:
        flag, _, value = arg.partition("=")
        if flag == "--cap-add":
            cap_add.append(value)
        elif flag == "--security-opt":
            security_opt.append(value)
        elif flag == "--ulimit":
            name, _, limits = value.partition("=")
            soft, _, hard = limits.partition(":")
            ulimits.append(Ulimit(name=name, soft=int(soft), hard=int(hard or soft)))
        else:
            raise RunError(f"device_policy.extra_run_args: {arg!r} is not supported (use --cap-add=, --security-opt=, --ulimit=)")
    return cap_add, security_opt, ulimits


# ---------------------------------------------------------------- check command lines


def probe_command(entry: Entry) -> list[str]:
    command = [
        "python",
        "-P",
        f"{CHECKS_DIR}/probe.py",
        "--json",
        "--expect-torch",
        entry.stack.torch.version,
        "--expect-aiter",
        entry.stack.aiter.label,
    ]
    if entry.is_amd:
        command += ["--expect-gfx", entry.gfx or "", "--expect-rocm"]
    else:
        command.append("--cpu-only")
    return command


def smoke_command(entry: Entry, target: Target) -> list[str]:
    command = [
        "python",
        "-P",
        f"{CHECKS_DIR}/smoke_layernorm.py",
        "--json",
        "--gate-max-kernels",
        str(entry.gates.k_norm_max_kernels),
        "--gate-min-speedup",
        str(entry.gates.k_norm_min_speedup),
        "--gate-min-ceiling-frac",
        str(entry.gates.prefill_min_ceiling_frac),
    ]
    if target.peak_bandwidth_tbs:
        command += ["--peak-bandwidth-gbs", str(target.peak_bandwidth_tbs * 1000)]
    if entry.is_amd:
        command += ["--device", "cuda", "--impl", "aiter-ck,aiter-triton,torch,torch-upcast"]
    else:
        command += ["--device", "cpu", "--cpu-only"]
    return command


# ---------------------------------------------------------------- containers


@contextmanager
def _interrupts_as_exceptions() -> Iterator[None]:
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
def _signals_deferred() -> Iterator[list[str]]:
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
        with _signals_deferred() as received:
            cleanup.problem = _remove(container, graceful)
        if received and graceful:
            raise KeyboardInterrupt(received[0])


def _remove(container: Container, graceful: bool) -> str | None:
    """Stop (when graceful) and remove the container, waiting until it is gone; a problem is returned, never raised."""
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


def _ensure_image(image_ref: str, pull: bool, progress: Progress, entry_id: str) -> Image:
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


def _image_facts(image: Image, image_ref: str) -> dict[str, Any]:
    """Read while the engine is up: id, registry digest and rocmci's pin labels (the report checks them against the plan)."""
    repository = image_ref.rsplit(":", 1)[0]
    digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if d.startswith(repository + "@")]
    labels = image.labels or {}
    return {
        "id": image.id,
        "digest": digests[0] if digests else None,
        "labels": {k: v for k, v in sorted(labels.items()) if k in PIN_LABELS and isinstance(v, str)},
    }


def _discard(entry_dir: Path) -> None:
    """Take an earlier result out of the way in one rename, before anything runs: from here on, however this run
    ends (an error, Ctrl-C, a dying engine), no older pass can stand in for it."""
    if not entry_dir.exists() and not entry_dir.is_symlink():
        return
    if entry_dir.is_dir() and not entry_dir.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{entry_dir.name}.discarded.", dir=entry_dir.parent))
        os.replace(entry_dir, aside / entry_dir.name)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        entry_dir.unlink()


class Interrupted(RunError):
    """Ctrl-C or SIGTERM during a validation: says what was interrupted and what was cleaned up."""

    exit_code = 130


def validate_entry(entry: Entry, options: RunOptions, progress: Progress) -> RunResult:
    image_ref = entry.image_ref(options.repository)
    final_dir = options.reports_dir / entry.id
    options.reports_dir.mkdir(parents=True, exist_ok=True)
    _discard(final_dir)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.id}.", dir=options.reports_dir))
    result = RunResult(entry.id, image_ref, final_dir)
    cleanup = Cleanup()
    try:
        _run_checks(entry, options, progress, result, work, cleanup)
        result.phase = "writing the result"
        write_result(work, entry, result, options.dev_root)
        _discard(final_dir)
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


def _run_checks(entry: Entry, options: RunOptions, progress: Progress, result: RunResult, work: Path, cleanup: Cleanup) -> None:
    try:
        result.phase = "looking up the image"
        result.image = _image_facts(_ensure_image(result.image_ref, options.pull_missing, progress, entry.id), result.image_ref)
        spec = container_spec(entry, options.dev_root)
        if entry.is_amd and spec.missing_devices:
            result.error = (
                f"no AMD GPU on this host: {', '.join(spec.missing_devices)} missing; "
                f"{entry.gpu} can only be validated on a runner with {entry.gfx} GPUs (see `invoke doctor`)"
            )
            progress.line(entry.id, "probing", "without GPU devices (the verdict cannot be a pass)")
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
    except RUN_FAILURES as exc:
        fold_error(result, exc)
    if cleanup.problem:
        result.error = "; ".join(filter(None, [result.error, cleanup.problem]))


RUN_FAILURES = (RunError, DockerException, RequestException, OSError)


def fold_error(result: RunResult, exc: BaseException) -> None:
    """The engine went away, a socket timed out, the image could not start: an error result, never a traceback."""
    detail = str(exc) if isinstance(exc, RunError) else f"{result.phase} failed: {type(exc).__name__}: {exc}"
    result.error = "; ".join(filter(None, [result.error, detail]))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _gpu_seen(probe_json: Path) -> dict:
    """The GPU the probe saw inside the container (name, gfx, count), for the report's host column; only plain values
    are taken from the document (it comes from inside the image under test)."""
    try:
        gpu = json.loads(probe_json.read_text()).get("gpu") or {}
        name, gfx, count = gpu.get("name"), gpu.get("gfx"), gpu.get("count")
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    return {
        "gpu_name": name if isinstance(name, str) else None,
        "gfx": gfx if isinstance(gfx, str) else None,
        "device_count": count if type(count) is int else None,
    }


def write_result(work: Path, entry: Entry, result: RunResult, dev_root: Path) -> None:
    document = {
        "schema": RESULT_SCHEMA,
        "entry": entry.summary(),
        "image": {"ref": result.image_ref, "id": None, "digest": None, **result.image},
        "host": {
            "hostname": socket.gethostname(),
            "gpu_devices": [str(p) for p in render_nodes(dev_root)],
            **_gpu_seen(work / "probe.json"),
        },
        "started": result.started,
        "finished": _now(),
        "steps": {name: step.as_json() for name, step in (("probe", result.probe), ("smoke", result.smoke)) if step},
        "error": result.error,
    }
    (work / "result.json").write_text(strict_json(document))


def strict_json(document: Any) -> str:
    """The JSON rocmci writes: standard (no NaN/Infinity), indented, newline-terminated."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def validate_entries(plan: Plan, entries: list[Entry], options: RunOptions, progress: Progress | None = None) -> list[RunResult]:
    if not entries:
        raise RunError(f"{plan.source}: no entries selected")
    progress = progress or Progress(width=max(len(e.id) for e in entries))
    with _interrupts_as_exceptions():
        return [validate_entry(entry, options, progress) for entry in entries]


def summary(results: list[RunResult]) -> str:
    def step(outcome: StepOutcome | None) -> str:
        if outcome is None:
            return "-"
        return "skipped" if outcome.skipped else f"exit {outcome.exit_code} ({outcome.wall_s:.1f}s)"

    rows = [(r.entry_id, step(r.probe), step(r.smoke), r.status, r.error or r.directory) for r in results]
    return table(("entry", "probe", "smoke", "status", "detail"), rows)


def record_published_digest(entry_dir: Path, digest: str) -> None:
    """After a publish: the registry digest the validated image now has, so reports name the exact image."""
    path = entry_dir / "result.json"
    document = json.loads(path.read_text())
    document["image"]["digest"] = digest
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(strict_json(document))
    os.replace(temporary, path)
