"""What a build is asked to do (options, resolved once), what it gives back, and the labels every built image carries:
the pins' labels plus where and when its inputs come from, and its own role."""

from __future__ import annotations

import datetime as dt
import functools
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rocmci.errors import BuildError
from rocmci.labels import EXTRA_CA_LABEL
from rocmci.plan import CONTEXT_DIRS, ROOT, Entry

if TYPE_CHECKING:
    from rocmci.build.record import BuildRecord

CA_ENV_VARS = ("ROCMCI_CA_CERT", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
Backend = Literal["auto", "sdk", "bake"]
Status = Literal["built", "skipped", "failed"]


def _fileserver_port() -> int:
    """Read when options are made, not at import: a bad value is one line for the build, not a crash of every task."""
    text = os.environ.get("ROCMCI_FILESERVER_PORT", "5099")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BuildError(f"ROCMCI_FILESERVER_PORT: expected a TCP port 1-65535 (got {text!r})")
    return int(text)


@dataclass(frozen=True)
class BuildOptions:
    repository: str
    backend: Backend = "auto"
    push: bool = False
    ca_cert: Path | None = None
    bake_ca: bool = False
    wheelhouse: Path | None = None
    log_dir: Path = ROOT / "build" / "logs"
    fileserver_port: int = field(default_factory=lambda: _fileserver_port())
    check_registry: bool = True
    registry_cache: bool = False
    no_cache: bool = False  # build every step anew (what a builder without this engine's layer cache does)
    source_url: str = "https://github.com/rocmci/rocmci"

    @classmethod
    def resolve(cls, repository: str, *, ca_cert: str | None = "auto", **kwargs: object) -> BuildOptions:
        """`ca_cert='auto'` serves the host's CA bundle to builds when the host names one (TLS-intercepting proxy)."""
        options = cls(repository=repository, ca_cert=_resolve_ca(ca_cert), **kwargs)  # type: ignore[arg-type]
        if options.bake_ca and options.push:
            raise BuildError("--bake-ca with --push: an image with a private CA baked in is for this host only, never published")
        if options.bake_ca and not options.ca_cert:
            raise BuildError("--bake-ca: no CA to bake (give --ca-cert PATH)")
        return options


@dataclass
class BuildResult:
    entry_id: str
    image_ref: str
    status: Status
    detail: str = ""
    log: Path | None = None
    seconds: float = 0.0
    backend: str = ""
    digest: str = ""  # the pushed manifest digest, where this build pushed
    entries: tuple[str, ...] = ()  # every entry that shares this image (entry_id is the first)
    build_id: str = ""
    record: BuildRecord | None = None  # with --push: what the registry serves under the tag, read back


def _resolve_ca(ca_cert: str | None) -> Path | None:
    if ca_cert in (None, "", "none"):
        return None
    if ca_cert != "auto":
        path = Path(ca_cert)
        if not path.is_file():
            raise BuildError(f"--ca-cert {ca_cert}: no such file")
        return path
    for var in CA_ENV_VARS:
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return None


def build_time_labels(entry: Entry, options: BuildOptions) -> dict[str, str]:
    """The pins' labels plus where and when the build inputs come from: deterministic, so a rebuild of the same
    inputs carries the same labels (and, where the builder allows, gives the same image)."""
    source = source_of_inputs()
    return {
        **entry.labels,
        "org.opencontainers.image.created": source_date(source),
        "org.opencontainers.image.source": options.source_url,
        "org.opencontainers.image.revision": source.revision,
    } | ({EXTRA_CA_LABEL: "baked"} if options.bake_ca else {})


@dataclass(frozen=True)
class SourceInfo:
    revision: str
    commit_time: int


@functools.cache
def source_of_inputs() -> SourceInfo:
    """The last commit that changed the build context (CONTEXT_DIRS), not HEAD: a commit elsewhere in the checkout
    (docs, tests) changes neither the content hash nor these labels. Uncommitted context changes mark it `-dirty`.
    Without git (a source tarball): revision `unknown`, time 0 (set SOURCE_DATE_EPOCH)."""
    git = ["git", "-C", str(ROOT)]
    last = subprocess.run(
        [*git, "log", "-1", "--format=%H %ct", "--", *CONTEXT_DIRS], capture_output=True, text=True, check=False
    )
    if last.returncode != 0 or not last.stdout.strip():
        return SourceInfo("unknown", 0)
    revision, commit_time = last.stdout.split()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", *CONTEXT_DIRS], capture_output=True, text=True, check=False)
    return SourceInfo(revision + ("-dirty" if dirty.stdout.strip() else ""), int(commit_time))


def source_date(source: SourceInfo) -> str:
    """`org.opencontainers.image.created`: SOURCE_DATE_EPOCH when set (reproducible-builds.org), else the commit time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch and not epoch.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH: expected whole seconds since 1970 (got {epoch!r})")
    seconds = int(epoch) if epoch else source.commit_time
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
