"""Runs rocmci's checks in an image rocmci did not build (`invoke check --image`), such as a team's own sglang image.

The probe and the smoke test come from this checkout's `checks/`, bind-mounted read-only into the container: an
image's own copy (a rocmci image keeps one in /opt/rocmci/checks) is never run. Such an image declares no pins: the
only expectations are the ones given (`--expect-torch/--expect-aiter/--expect-rocm`); the target's gfx, ROCm torch
and device policy come from matrix.yaml's GPU target. The result lands in reports/<check entry id>/ exactly like a
validated entry's (result.json, probe.json, smoke.json and logs), for the report stage to judge.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from requests.exceptions import RequestException

from rocmci.engine import docker_client
from rocmci.errors import RunError
from rocmci.labels import IMAGE_LABEL
from rocmci.plan import PIN_LABELS, ROOT, Gates, Target
from rocmci.progress import Progress
from rocmci.validate.container import Cleanup, check_container, interrupts_as_exceptions, run_step
from rocmci.validate.entries import Interrupted, fold_error, run_failures
from rocmci.validate.results import RunResult, StepOutcome, discard, write_result
from rocmci.validate.spec import ContainerSpec, container_spec, smoke_command

CHECKS_SOURCE = ROOT / "checks"
CHECKS_MOUNT = "/rocmci/checks"  # rocmci's checks, read-only; deliberately not /opt/rocmci/checks (a rocmci image's copy)
EMPTY_WORKDIR = "/rocmci/cwd"  # a fresh tmpfs: the working directory of every check process
INTERPRETERS = ("python3", "python")
DETECT_SNIPPET = "import sys, importlib.util as u; print('%d.%d' % sys.version_info[:2], int(u.find_spec('torch') is not None))"

# A docker image reference (distribution/reference's grammar, simplified): [host[:port]/]path[:tag][@sha256:hex].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)"
_REFERENCE = re.compile(
    rf"^(?P<repository>(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>[\w][\w.-]{{0,127}}))?(?:@(?P<digest>sha256:[0-9a-f]{{64}}))?$"
)
_TORCH_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)+([a-z]+[0-9]*)*(\.dev[0-9]+)?(\+[A-Za-z0-9.]+)?$")
_AITER_PIN = re.compile(r"^([0-9]+(\.[0-9]+)+\S*|[0-9a-f]{7,40})$")
_ROCM_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")


class CheckError(RunError):
    """A bad `invoke check` input, or an image that cannot be checked at all: one line, nothing written."""


@dataclass(frozen=True)
class ImageReference:
    text: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        match = _REFERENCE.match(text.strip()) if text else None
        if match is None or len(text) > 512:
            raise CheckError(
                f"--image: {text!r} is not an image reference (expected [host[:port]/]name[:tag][@sha256:<64 hex>], lowercase name)"
            )
        return cls(text.strip(), match["repository"], match["tag"], match["digest"])

    @property
    def registry_reference(self) -> str:
        """What the registry is asked for: the digest when given, else the tag (`latest` as docker pull does)."""
        return self.digest or self.tag or "latest"


@dataclass(frozen=True)
class Expectations:
    """What the caller expects the image to hold; None: not expected, so never compared (the report says what it found)."""

    torch: str | None = None
    aiter: str | None = None
    rocm: str | None = None

    @classmethod
    def parse(cls, target: Target, torch: str | None, aiter: str | None, rocm: str | None) -> Expectations:
        checks = (
            ("--expect-torch", torch, _TORCH_VERSION, "a torch version such as 2.13.0 or 2.8.0+rocm7.0.0.lw.git64359f59"),
            ("--expect-aiter", aiter, _AITER_PIN, "an aiter version such as 0.1.20, or a 7-40 hex git commit"),
            ("--expect-rocm", rocm, _ROCM_VERSION, "a ROCm version such as 7.2"),
        )
        for flag, value, pattern, what in checks:
            if value is not None and not pattern.match(value):
                raise CheckError(f"{flag}: expected {what} (got {value!r})")
        if rocm and target.kind == "cpu":
            raise CheckError(f"--expect-rocm: GPU target {target.name} is a CPU target: nothing there runs ROCm")
        return cls(torch or None, aiter or None, rocm or None)

    def as_json(self) -> dict[str, str | None]:
        return {"torch": self.torch, "aiter": self.aiter, "rocm": self.rocm}


def check_entry_id(gpu: str, reference: ImageReference) -> str:
    """`check-<gpu>-<name>_<tag>-<8 hex of the whole reference>`: readable, a safe directory name, one per image."""
    name = reference.repository.rsplit("/", 1)[-1]
    label = f"{name}_{reference.tag}" if reference.tag else name
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:60]
    return f"check-{gpu}-{label}-{hashlib.sha256(reference.text.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class ExternalEntry:
    """An image checked against a GPU target: what a plan Entry is to `invoke validate`, without any pin of its own.
    It carries what the device logic of rocmci.validate reads from an entry (id, gpu, target, gates, is_amd, gfx)."""

    id: str
    gpu: str
    target: Target
    gates: Gates
    reference: ImageReference
    expect: Expectations
    python: str | None = None

    @property
    def is_amd(self) -> bool:
        return self.target.kind == "amd"

    def summary(self) -> dict[str, Any]:
        """The entry as the report stage reads it: pins are the expectations only (None: nothing to compare)."""
        return {
            "id": self.id,
            "gpu": self.gpu,
            "gfx": self.target.gfx,
            "kind": self.target.kind,
            "stack": "external",
            "external": True,
            "image": self.reference.text,
            "expect": self.expect.as_json(),
            "rocm": self.expect.rocm,
            "python": self.python,
            "torch": self.expect.torch,
            "torch_index": None,
            "aiter": self.expect.aiter,
            "aiter_source": "external",
            "aiter_spec": None,
            "aiter_kernels": None,
            "base_image": None,
            "fixture": False,
            "build": None,
            "tag": None,
            "validated_tag": None,
            "content_hash": None,
            "runs_on": list(self.target.runs_on),
            "peak_bandwidth_gbs": self.target.peak_bandwidth_tbs * 1000 if self.target.peak_bandwidth_tbs else None,
        }


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int]

    def argv(self) -> list[str]:
        # Python >= 3.11: -P keeps the script's directory off sys.path. Python 3.10 (which aiter supports) has no -P
        # and exits 2 on it. There the check still cannot be shadowed: the script's directory is CHECKS_MOUNT (rocmci's
        # read-only checks, no `aiter` in it), and every check runs in EMPTY_WORKDIR, a fresh tmpfs, instead of the
        # image's WORKDIR (an aiter source checkout in sglang's images). That also defuses what -P never covered: an
        # empty or relative PYTHONPATH entry (`ENV PYTHONPATH=/x:$PYTHONPATH` with it unset) puts the working
        # directory itself on sys.path.
        return [self.path, "-P"] if self.version >= (3, 11) else [self.path]


def check_spec(entry: ExternalEntry, dev_root: Path) -> ContainerSpec:
    """rocmci.validate's container spec for the target (devices, groups, shm, network), plus the read-only checks
    mount and the empty working directory."""
    spec = container_spec(entry, dev_root)  # type: ignore[arg-type]  # ExternalEntry carries what it reads
    return replace(
        spec,
        volumes={str(CHECKS_SOURCE): {"bind": CHECKS_MOUNT, "mode": "ro"}},
        tmpfs={EMPTY_WORKDIR: "rw,size=256m,mode=1777"},
        working_dir=EMPTY_WORKDIR,
        entrypoint=[""],  # an image's ENTRYPOINT (vLLM's starts its server) would take `sleep infinity` as arguments
        labels={**spec.labels, IMAGE_LABEL: entry.reference.text},
    )


def probe_command(entry: ExternalEntry, python: Interpreter) -> list[str]:
    command = [*python.argv(), f"{CHECKS_MOUNT}/probe.py", "--json"]
    for flag, value in (("--expect-torch", entry.expect.torch), ("--expect-aiter", entry.expect.aiter)):
        if value:
            command += [flag, value]
    if entry.is_amd:
        command += ["--expect-gfx", entry.target.gfx or "", "--expect-rocm"]
        command += ["--expect-rocm-version", entry.expect.rocm] if entry.expect.rocm else []
    else:
        command.append("--cpu-only")
    return command


def external_smoke_command(entry: ExternalEntry, python: Interpreter) -> list[str]:
    """validate's smoke command line (the target's gates and device), run by this image's interpreter from the mount."""
    command = smoke_command(entry, entry.target)  # type: ignore[arg-type]
    script = command.index(next(arg for arg in command if arg.endswith("/smoke_layernorm.py")))
    return [*python.argv(), f"{CHECKS_MOUNT}/smoke_layernorm.py", *command[script + 1 :]]


def find_interpreter(container: Container) -> Interpreter:
    """The image's Python: the first of python3/python that has torch, else the first that runs at all."""
    found: list[tuple[Interpreter, bool]] = []
    for name in INTERPRETERS:
        code, output = container.exec_run([name, "-c", DETECT_SNIPPET])
        fields = (output or b"").decode(errors="replace").split()
        if code == 0 and len(fields) == 2 and re.fullmatch(r"[0-9]+\.[0-9]+", fields[0]):
            major, minor = (int(part) for part in fields[0].split("."))
            found.append((Interpreter(name, (major, minor)), fields[1] == "1"))
    if not found:
        raise RunError(f"no Python in the image: neither of {', '.join(INTERPRETERS)} runs there")
    return next((python for python, has_torch in found if has_torch), found[0][0])


def local_image(reference: ImageReference, pull: bool, progress: Progress, entry_id: str) -> Any:
    """The image from the engine, pulled when missing; a clear one-line error when it is neither."""
    client = docker_client()
    try:
        return client.images.get(reference.text)
    except ImageNotFound:
        if not pull:
            raise CheckError(f"--image {reference.text}: not in the local Docker engine") from None
    except (APIError, DockerException, RequestException) as exc:
        raise CheckError(f"--image {reference.text}: the engine cannot look it up: {exc}") from None
    progress.line(entry_id, "pulling", reference.text)
    try:
        return client.images.pull(reference.text)
    except (APIError, NotFound, DockerException, RequestException) as exc:
        detail = getattr(exc, "explanation", None) or exc
        raise CheckError(f"--image {reference.text}: not in the local Docker engine, and pulling it failed: {detail}") from None


def image_facts(image: Any, entry: ExternalEntry) -> dict[str, Any]:
    """Id, registry digest and only those rocmci labels that an expectation (or the target's gfx) speaks to: a
    label nobody asked about is neither a match nor a mismatch."""
    asked = {"torch"} if entry.expect.torch else set()
    asked |= {"aiter"} if entry.expect.aiter else set()
    asked |= {"gfx"} if entry.is_amd else set()
    digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if d.startswith(entry.reference.repository + "@")]
    labels = image.labels or {}
    return {
        "id": image.id,
        "digest": entry.reference.digest or (digests[0] if digests else None),
        "labels": {k: v for k, v in sorted(labels.items()) if PIN_LABELS.get(k) in asked and isinstance(v, str)},
    }


def check_image(
    entry: ExternalEntry, reports_dir: Path, progress: Progress, *, dev_root: Path = Path("/dev"), step_timeout_s: int = 900
) -> tuple[ExternalEntry, RunResult]:
    """Probe and smoke test in the image (the entry comes back with the Python version found); reports/<entry id>/ replaced in one rename at the end (nothing claims a pass
    before then). The image must be there or pullable first: otherwise CheckError and nothing is written."""
    image = local_image(entry.reference, True, progress, entry.id)
    final_dir = reports_dir / entry.id
    reports_dir.mkdir(parents=True, exist_ok=True)
    discard(final_dir)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.id}.", dir=reports_dir))
    result = RunResult(entry.id, entry.reference.text, final_dir, image=image_facts(image, entry))
    cleanup = Cleanup()
    try:
        with interrupts_as_exceptions():
            entry = _run(entry, dev_root, step_timeout_s, progress, result, work, cleanup)
            write_result(work, entry, result, dev_root)  # type: ignore[arg-type]
        os.replace(work, final_dir)
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        raise Interrupted(f"{entry.id}: check interrupted while {result.phase}; no result was written") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    progress.line(entry.id, "checked" if result.status == "ok" else result.status.upper(), str(final_dir))
    return entry, result


def _run(
    entry: ExternalEntry, dev_root: Path, timeout_s: int, progress: Progress, result: RunResult, work: Path, cleanup: Cleanup
) -> ExternalEntry:
    try:
        spec = check_spec(entry, dev_root)
        if entry.is_amd and spec.missing_devices:
            result.error = (
                f"no AMD GPU on this host: {', '.join(spec.missing_devices)} missing; "
                f"{entry.gpu} can only be checked on a runner with {entry.target.gfx} GPUs (see `invoke doctor`)"
            )
        result.phase = "starting the check container"
        with check_container(entry.reference.text, spec, cleanup) as container:
            result.phase = "looking for the image's Python"
            python = find_interpreter(container)
            entry = replace(entry, python=".".join(map(str, python.version)))
            progress.line(entry.id, "python", f"{python.path} {entry.python} ({' '.join(python.argv())})")
            result.phase = "running the probe step"
            command = probe_command(entry, python)
            progress.line(entry.id, "probing", " ".join(command[1:]))
            result.probe = run_step(container, command, timeout_s, work / "probe.json", work / "probe.log")
            if result.error:
                result.smoke = StepOutcome(None, 0.0, "", skipped=result.error)
            else:
                result.phase = "running the smoke step"
                command = external_smoke_command(entry, python)
                progress.line(entry.id, "smoke", " ".join(command[1:]))
                result.smoke = run_step(container, command, timeout_s, work / "smoke.json", work / "smoke.log")
            result.phase = "removing the check container"
    except run_failures() as exc:
        fold_error(result, exc)
    if cleanup.problem:
        result.error = "; ".join(filter(None, [result.error, cleanup.problem]))
    return entry
