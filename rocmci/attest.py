"""Signed attestations of compat reports, through cosign (pinned: Debian 13 trixie's cosign 2.5.0).

What gets signed: the compat record rocmci attaches to the image (report.entry_documents) as the predicate of an
in-toto statement whose subject is the image digest, wrapped in DSSE and signed by `cosign attest`. cosign 2.x
stores it in the image's `sha256-<hex>.att` image (one DSSE envelope per layer), apart from rocmci's own report
artifacts (OCI 1.1 referrers / the `sha256-<hex>` fallback index).

Predicate types: one per GPU model and verdict, `https://rocmci.dev/attestations/compat/v1/<gpu>/<verdict>`. cosign
evaluates a policy against EVERY signed attestation of the type it is asked for, so a signed failing report (another
GPU, an older run) sharing one type with the passing one would make a correct admission fail. With the GPU and the
verdict in the type, an admission for mi355x asks only for `.../mi355x/pass`: failing reports and reports of other
GPUs are signed too (history stays verifiable) but can never reach that policy.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rocmci.errors import RocmciError

if TYPE_CHECKING:
    from rocmci.history import RegressionGate
    from rocmci.oci import RegistryClient, ReportDocuments

PREDICATE_BASE = "https://rocmci.dev/attestations/compat/v1"
COSIGN_MAJOR = "2"
COSIGN_PIN = "2.5.0 (Debian 13 trixie's cosign package; scripts/install-cosign)"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
OIDC_TOKEN_SOURCES = ("ACTIONS_ID_TOKEN_REQUEST_URL", "SIGSTORE_ID_TOKEN")  # what cosign signs keyless with
ROOT = Path(__file__).resolve().parent.parent
POLICY_TEMPLATE = ROOT / "policies" / "admission.cue"
_GPU_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TIMEOUT_S = 300

Log = Callable[[str], None]


class AttestError(RocmciError):
    pass


def predicate_type(gpu: str, verdict: str) -> str:
    """rocmci's versioned predicate type for a report of `verdict` on `gpu`."""
    if not _GPU_NAME.match(gpu or "") or not _GPU_NAME.match(verdict or ""):
        raise AttestError(f"predicate type: GPU {gpu!r} and verdict {verdict!r} must be lowercase names")
    return f"{PREDICATE_BASE}/{gpu}/{verdict}"


def cosign_binary() -> str:
    """$ROCMCI_COSIGN, else `cosign` on PATH (scripts/install-cosign puts the pinned one in .venv/bin); only cosign 2.x."""
    beside_python = Path(sys.prefix) / "bin" / "cosign"  # where scripts/install-cosign puts it, venv not activated
    found = os.environ.get("ROCMCI_COSIGN") or shutil.which("cosign") or (str(beside_python) if beside_python.is_file() else None)
    if not found or not os.access(found, os.X_OK):
        raise AttestError(f"cosign not found (ROCMCI_COSIGN or PATH): run bash scripts/install-cosign (rocmci pins {COSIGN_PIN})")
    major = cosign_major(found)
    if major != COSIGN_MAJOR:
        raise AttestError(
            f"{found} is cosign {major}.x; rocmci pins cosign {COSIGN_PIN}: 3.x stores attestations where 2.x does not look, "
            "so one repository must use one major version (bash scripts/install-cosign, then ROCMCI_COSIGN=.venv/bin/cosign)"
        )
    return found


@functools.cache
def cosign_major(path: str) -> str:
    """The major version of the cosign at `path`. Debian builds say `devel`: then cosign 3.x is told apart by its
    `signing-config` command, which 2.x lacks."""
    try:
        version = json.loads(subprocess.run([path, "version", "--json"], capture_output=True, text=True, timeout=60).stdout)
        git_version = str(version.get("gitVersion", ""))
        if re.match(r"^v?\d+\.", git_version):
            return git_version.lstrip("v").split(".", 1)[0]
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError) as exc:
        raise AttestError(f"{path}: cannot tell its version: {exc}") from None
    return "3" if re.search(r"^\s*signing-config\b", usage, re.MULTILINE) else COSIGN_MAJOR


def _is_kms(key: str) -> bool:
    return "://" in key


def _check_key_file(key: str, flag: str) -> None:
    if not _is_kms(key) and not Path(key).is_file():
        raise AttestError(f"{key}: {flag}: no such key file (a cosign key file, or a KMS reference such as awskms://...)")


# ---------------------------------------------------------------- who signs, who is trusted


@dataclass(frozen=True)
class Signer:
    """How `publish --sign` signs: a key (file or KMS reference, offline: no transparency-log upload) or, with no key,
    keyless through the CI's OIDC identity (GitHub Actions: `id-token: write`), logged in Rekor as cosign does."""

    key: str | None = None

    def __post_init__(self) -> None:
        if self.key:
            _check_key_file(self.key, "--key")
        elif not any(os.environ.get(name) for name in OIDC_TOKEN_SOURCES):
            # Without an ambient token cosign would start an interactive browser login: refuse instead.
            raise AttestError(
                "--sign without --key signs keyless with the CI's OIDC identity, and none is here (GitHub Actions: "
                "`permissions: id-token: write`; elsewhere SIGSTORE_ID_TOKEN): give --key FILE or a KMS reference"
            )

    def attest_args(self, reference: str, predicate_file: Path, ptype: str) -> list[str]:
        args = ["attest", "--yes", "--type", ptype, "--predicate", str(predicate_file)]
        if self.key:
            args += ["--key", self.key, "--tlog-upload=false"]
        return [*args, reference]

    def describe(self) -> str:
        return f"key {self.key}" if self.key else "keyless (OIDC identity of this CI job)"


@dataclass(frozen=True)
class Identity:
    """Whom `pull --verify` trusts: a public key (file or KMS reference) or a keyless identity and its OIDC issuer."""

    key: str | None = None
    identity: str | None = None
    issuer: str | None = None

    def __post_init__(self) -> None:
        if self.key and (self.identity or self.issuer):
            raise AttestError("--verify: give either --key or --identity with --issuer, not both")
        if not self.key and not (self.identity and self.issuer):
            raise AttestError(
                "--verify: needs --key (public key file or KMS reference) or --identity and --issuer "
                f"(keyless; GitHub Actions' issuer is {GITHUB_ISSUER})"
            )
        if self.key:
            _check_key_file(self.key, "--key")

    def verify_args(self, reference: str, ptype: str) -> list[str]:
        args = ["verify-attestation", "--type", ptype]
        if self.key:
            args += ["--key", self.key, "--insecure-ignore-tlog=true"]  # key signatures are made offline (no Rekor entry)
        else:
            args += ["--certificate-identity", str(self.identity), "--certificate-oidc-issuer", str(self.issuer)]
        return [*args, reference]

    def describe(self) -> str:
        return f"key {self.key}" if self.key else f"identity {self.identity} (issuer {self.issuer})"


# ---------------------------------------------------------------- running cosign


def _registry_env(reference: str, env: Mapping[str, str]) -> tuple[dict[str, str], tempfile.TemporaryDirectory | None]:
    """cosign reads the Docker config; rocmci's ROCMCI_REGISTRY_USER/PASSWORD go to it as a private, temporary one."""
    from rocmci import oci

    out = dict(env)
    user, password = env.get(oci.USER_ENV), env.get(oci.PASSWORD_ENV)
    if not (user and password):
        return out, None
    host = oci.split_repository(reference.split("@", 1)[0])[0]
    holder = tempfile.TemporaryDirectory(prefix="rocmci-cosign-")
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = Path(holder.name) / "config.json"
    config.touch(mode=0o600)
    config.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    out["DOCKER_CONFIG"] = holder.name
    return out, holder


def run_cosign(args: Sequence[str], reference: str) -> subprocess.CompletedProcess[str]:
    env, holder = _registry_env(reference, os.environ)
    command = [cosign_binary(), *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise AttestError(f"cosign {args[0]} {reference}: no answer in {_TIMEOUT_S} s") from None
    finally:
        if holder is not None:
            holder.cleanup()


def cosign_failure(proc: subprocess.CompletedProcess[str]) -> str:
    """cosign's own reason: its last `Error:` line, else its last line."""
    lines = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
    return (errors or lines or [f"exit {proc.returncode}"])[-1][:400]


# ---------------------------------------------------------------- signing


@dataclass(frozen=True)
class Attestation:
    """One signed attestation: the sha256 of its DSSE envelope (the layer digest cosign stores), its type, its statement."""

    digest: str
    predicate_type: str
    statement: Mapping[str, Any] = field(repr=False)
    signer: str = ""

    @property
    def predicate(self) -> Mapping[str, Any]:
        return self.statement.get("predicate") or {}

    @property
    def subject_digests(self) -> list[str]:
        return [f"sha256:{s.get('digest', {}).get('sha256')}" for s in self.statement.get("subject") or [] if isinstance(s, dict)]

    def lock_entry(self) -> dict[str, Any]:
        return {"digest": self.digest, "predicateType": self.predicate_type, "signer": self.signer, "format": "dsse"}


def _envelope(line: str, signer: str) -> Attestation:
    try:
        envelope = json.loads(line)
        statement = json.loads(base64.b64decode(envelope["payload"]))
    except (ValueError, KeyError, TypeError):
        raise AttestError(f"cosign printed something that is not a DSSE envelope: {line[:120]!r}") from None
    digest = f"sha256:{hashlib.sha256(line.encode()).hexdigest()}"
    return Attestation(digest, str(statement.get("predicateType")), statement, signer)


def sign_report(reference: str, record: Mapping[str, Any], signer: Signer, log: Log = print) -> str:
    """Attest `record` (a compat record) on `reference` (repository@sha256:...) with cosign; returns its predicate type."""
    entry = record.get("entry") or {}
    ptype = predicate_type(str(entry.get("gpu")), str(record.get("verdict")))
    with tempfile.TemporaryDirectory(prefix="rocmci-attest-") as tmp:
        predicate = Path(tmp) / "predicate.json"
        predicate.write_text(json.dumps(record, sort_keys=True))
        proc = run_cosign(signer.attest_args(reference, predicate, ptype), reference)
    if proc.returncode != 0:
        raise AttestError(f"cosign attest {reference} ({signer.describe()}) failed: {cosign_failure(proc)}")
    log(f"signed {ptype} on {reference} ({signer.describe()})")
    return ptype


# ---------------------------------------------------------------- verifying


def verify(reference: str, ptype: str, identity: Identity) -> list[Attestation]:
    """The attestations of `ptype` on `reference` that cosign verified against `identity`."""
    proc = run_cosign(identity.verify_args(reference, ptype), reference)
    if proc.returncode != 0:
        raise AttestError(cosign_failure(proc))
    return [_envelope(line, identity.describe()) for line in proc.stdout.splitlines() if line.strip().startswith("{")]


class PullVerifier:
    """`pull --verify`: a candidate counts only if its passing report for the GPU is signed by the trusted identity.

    Called by rocmci.pull.find_validated per candidate report; returns why a candidate is refused (None: accepted)."""

    def __init__(self, repository: str, gpu: str, identity: Identity):
        self.repository = repository
        self.gpu = gpu
        self.identity = identity
        self.accepted: dict[str, Attestation] = {}
        self._verified: dict[str, list[Attestation] | AttestError] = {}  # one cosign run per image

    def __call__(self, digest: str, record: Mapping[str, Any]) -> str | None:
        ptype = predicate_type(self.gpu, "pass")
        if digest not in self._verified:
            try:
                self._verified[digest] = verify(f"{self.repository}@{digest}", ptype, self.identity)
            except AttestError as exc:
                self._verified[digest] = exc
        found = self._verified[digest]
        if isinstance(found, AttestError):
            attached = self.stored(digest, ptype)
            why = (
                "unsigned: no attestation of that type is attached"
                if attached == 0
                else f"{attached} attached, none verifies: signed by another identity, or changed after signing"
            )
            return f"rejected: no {ptype} attestation signed by {self.identity.describe()} verifies ({why}): cosign: {found}"
        for attestation in found:
            if digest in attestation.subject_digests and attestation.predicate == dict(record):
                self.accepted[digest] = attestation
                return None
        return (
            f"rejected: {len(found)} attestation(s) signed by {self.identity.describe()}, none of them is this "
            "passing report (its record differs from every signed predicate)"
        )

    def stored(self, digest: str, ptype: str) -> int:
        """How many attestations of `ptype` cosign 2.x stores for `digest` (DSSE layers of its `sha256-<hex>.att` image)."""
        from rocmci import oci

        client, name = oci.client_for(self.repository)
        tag = oci.fallback_tag(digest) + ".att"
        if not client.tag_exists(name, tag):
            return 0
        layers = client.get_manifest(name, tag).json.get("layers") or []
        return sum(1 for layer in layers if (layer.get("annotations") or {}).get("predicateType") == ptype)

    def lock_entry(self, digest: str) -> dict[str, Any] | None:
        attestation = self.accepted.get(digest)
        return attestation.lock_entry() if attestation else None


# ---------------------------------------------------------------- admission policy


def admission_policy(gpu: str, template: Path = POLICY_TEMPLATE) -> str:
    """The CUE policy admitting an image only if a signed rocmci attestation says it passed on `gpu`."""
    predicate_type(gpu, "pass")
    text = template.read_text()
    rewritten, count = re.subn(r'(?m)^#gpu: "[^"]*"', f'#gpu: "{gpu}"', text)
    if count != 1:
        raise AttestError(f'{template}: #gpu: expected exactly one line `#gpu: "<gpu>"` (found {count})')
    return rewritten


# ---------------------------------------------------------------- publish hooks


@dataclass(frozen=True)
class PublishHooks:
    """What rocmci.publish.attach_and_move calls: the regression gate before the report is attached, signing after."""

    signer: Signer | None = None
    gate: RegressionGate | None = None

    def before_attach(
        self, client: RegistryClient, name: str, gpu: str, digest: str, docs: ReportDocuments, log: Log
    ) -> tuple[ReportDocuments, str | None]:
        return self.gate.check(client, name, gpu, digest, docs, log) if self.gate else (docs, None)

    def after_attach(self, reference: str, docs: ReportDocuments, log: Log) -> str | None:
        return sign_report(reference, docs.record, self.signer, log) if self.signer else None
