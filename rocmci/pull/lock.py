"""Deployment lock files: what `pull --lock` writes, and the check that a deployment still matches it.

A lock names one image by digest, the pins its report recorded, and the report that made it deployable: that
report's digest, its verdict and the verdict's scope (`gpu`, or `cpu-only` for an image that passed without any
aiter kernel running). `verify_lock` re-reads the registry: the image digest must still be there, the report must
still be attached to it (and still name that image), and that report must still say `pass` with the same scope on
the same GPU. Writer and reader share the `Lock` model.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rocmci import oci
from rocmci.errors import Problem, RegistryError, RocmciError
from rocmci.pull.find import PullResult, pull, stderr_line

if TYPE_CHECKING:
    from rocmci.oci import AttachedReport, RegistryClient

LOCK_SCHEMA = "rocmci.lock/v2"
LOCKED_PINS = ("id", "gpu", "gfx", "rocm", "python", "torch", "aiter", "stack")  # from the report's entry record
Scope = Literal["gpu", "cpu-only"]


class LockError(RocmciError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, populate_by_name=True)


Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class LockedReport(_Strict):
    digest: Digest
    artifact_type: str = Field(alias="artifactType")
    report_time: str
    verdict: Literal["pass"]
    scope: Scope


class LockedAttestation(_Strict):
    """The signed attestation `pull --verify` accepted (rocmci.attest): its DSSE envelope's digest and type."""

    digest: Digest
    predicate_type: str = Field(alias="predicateType")
    signer: str
    format: Literal["dsse"]


class Lock(_Strict):
    lock_schema: Literal["rocmci.lock/v2"] = Field(alias="schema")
    repository: str
    gpu: str
    reference: str
    digest: Digest
    tags: list[str]
    pins: dict[str, str | None]
    report: LockedReport
    attestation: LockedAttestation | None = None

    @property
    def scope_words(self) -> str:
        return "on the GPU" if self.report.scope == "gpu" else "CPU only: no aiter kernel ran"


def find_report(client: RegistryClient, name: str, image_digest: str, report_digest: str) -> AttachedReport | None:
    """The report artifact `report_digest`, if it is still attached to `image_digest` and checks out."""
    reports, _skipped = oci.attached_reports(client, name, image_digest)
    return next((r for r in reports if r.artifact.digest == report_digest), None)


def lock_for(result: PullResult, client: RegistryClient) -> Lock:
    """The lock of a pull: its digest and pins, and the report it rests on with that report's verdict scope."""
    name = oci.split_repository(result.repository)[1]
    report = find_report(client, name, result.digest, result.report_digest)
    if report is None:
        raise RegistryError(f"the report {result.report_digest} of {result.reference} is no longer attached: pull again")
    pins = {key: result.entry.get(key) for key in LOCKED_PINS if key in result.entry}
    data = {
        "schema": LOCK_SCHEMA,
        "repository": result.repository,
        "gpu": result.gpu,
        "reference": result.reference,
        "digest": result.digest,
        "tags": list(result.tags),
        "pins": {key: None if value is None else str(value) for key, value in pins.items()},
        "report": {
            "digest": result.report_digest,
            "artifactType": oci.REPORT_ARTIFACT_TYPE,
            "report_time": result.report_time,
            "verdict": report.verdict,
            "scope": report.documents.record.get("scope"),
        },
    } | ({"attestation": dict(result.attestation)} if result.attestation else {})
    try:
        return Lock.model_validate(data)
    except ValidationError as exc:
        raise LockError(f"{result.reference}: cannot lock this report: {_first_error(exc)}") from None


def pull_and_lock(
    repository: str,
    gpu: str,
    torch: str | None = None,
    aiter: str | None = None,
    lock_file: Path | None = None,
    **pull_options: Any,
) -> tuple[PullResult, Lock | None]:
    """rocmci.pull.pull, then (with `lock_file`) the lock of what it pulled, written to that file.

    The destination is checked before anything is chosen or pulled, so a bad `--lock` costs no pull."""
    if lock_file is not None:
        check_lock_destination(lock_file)
    result = pull(repository, gpu, torch=torch, aiter=aiter, **pull_options)
    if lock_file is None:
        return result, None
    client = pull_options.get("client") or oci.client_for(repository)[0]
    locked = lock_for(result, client)
    write_lock(locked, lock_file)
    pull_options.get("log", stderr_line)(f"pull: lock written to {lock_file}")
    return result, locked


def _lock_temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _why_not(exc: OSError) -> str:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "a part of its directory is a file, not a directory"
    return exc.strerror or str(exc)


def check_lock_destination(path: Path) -> None:
    """Before pulling anything: the lock file can be written there (a trial write of its temporary, removed again)."""
    if path.is_dir():
        raise LockError(f"--lock {path}: is a directory; give a file name such as {path / 'rocmci.lock.json'}")
    trial = _lock_temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        trial.write_text("")
        trial.unlink()
    except OSError as exc:
        raise LockError(f"--lock {path}: cannot write there: {_why_not(exc)}") from None


def write_lock(lock: Lock, path: Path) -> None:
    """JSON (YAML when the file ends in .yaml/.yml), written whole or not at all."""
    data = lock.model_dump(by_alias=True)
    if data["attestation"] is None:  # an unverified pull's lock has no attestation key at all
        del data["attestation"]
    text = (
        yaml.safe_dump(data, sort_keys=False)
        if path.suffix in {".yaml", ".yml"}
        else json.dumps(data, indent=2, allow_nan=False) + "\n"
    )
    tmp = _lock_temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise LockError(f"--lock {path}: cannot write there: {_why_not(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def read_lock(path: Path) -> Lock:
    """A lock file, or a LockError of one `file: field: message` line per problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LockError(str(Problem(str(path), None, "", f"cannot read the lock file: {exc.strerror}"))) from None
    try:
        data: Any = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise LockError(
            str(Problem(str(path), None, "", f"expected a JSON lock written by `rocmci pull --lock` ({exc})"))
        ) from None
    if isinstance(data, dict) and data.get("schema") == "rocmci.lock/v1":
        message = "a rocmci.lock/v1 lock records no verdict scope: expected rocmci.lock/v2 (run `rocmci pull --lock` again)"
        raise LockError(str(Problem(str(path), None, "schema", message)))
    try:
        return Lock.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(str(path), None, ".".join(str(p) for p in e["loc"]), f"{e['msg']} (got {e.get('input')!r})")
            for e in exc.errors()
        ]
        raise LockError("\n".join(map(str, problems))) from None


@dataclass(frozen=True)
class LockCheck:
    name: str
    ok: bool
    detail: str


def verify_lock(lock: Lock, repository: str | None = None, client: RegistryClient | None = None) -> list[LockCheck]:
    """Whether the deployment a lock describes still holds in the registry (`repository` overrides the lock's)."""
    where = repository or lock.repository
    client, name = (client, oci.split_repository(where)[1]) if client else oci.client_for(where)
    image = client.head_manifest(name, lock.digest)
    if image is None:
        missing = f"{where}@{lock.digest} is not in the registry (deleted, or garbage-collected)"
        return [LockCheck("image", False, missing), LockCheck("report", False, "not checked: no image")]
    checks = [LockCheck("image", True, f"{where}@{lock.digest}")]
    report = find_report(client, name, lock.digest, lock.report.digest)
    if report is None:
        detail = f"report {lock.report.digest} is no longer attached to {lock.digest} (deleted or replaced)"
        return [*checks, LockCheck("report", False, detail)]
    checks.append(LockCheck("report", True, f"{lock.report.digest} attached, names this image"))
    scope = report.documents.record.get("scope")
    gpu = report.entry.get("gpu")
    holds = report.verdict == "pass" and scope == lock.report.scope and gpu == lock.gpu
    got = f"verdict {report.verdict}, scope {scope}, on {gpu}"
    wanted = f"pass, scope {lock.report.scope}, on {lock.gpu}"
    checks.append(LockCheck("verdict", holds, got if holds else f"{got}: the lock needs {wanted}"))
    return checks
