"""Builds matrix entries into images: the bake plan, two backends (Docker SDK legacy builder, buildx bake),
the locally made Debian base, the build-time file server (extra CA, offline wheelhouse, local wheels)."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from docker.errors import APIError, ImageNotFound
from docker.errors import BuildError as DockerBuildError

from rocmci.engine import MANAGED_LABEL, docker_client
from rocmci.errors import BuildError
from rocmci.plan import CONTEXT_DIRS, ROOT, BaseImage, Entry, Plan, shared_builds
from rocmci.progress import Progress, table

DOCKERFILE = "images/Dockerfile"
BAKE_GROUP = "default"
CA_ENV_VARS = ("ROCMCI_CA_CERT", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
DEBOOTSTRAP_PACKAGES = "python3,python3-venv,ca-certificates"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
EXTRA_CA_LABEL = "io.rocmci.extra-ca"
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


# ---------------------------------------------------------------- build plan (bake file)


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


def _target_name(entry: Entry) -> str:
    return entry.id.replace(".", "_")


def bake_file(entries: list[Entry], options: BuildOptions, fetch_url: str = "") -> dict:
    """A `docker buildx bake` file: one target per shared build (stack x gfx), the pins as build args and as OCI labels."""
    targets = {}
    for entry in (group[0] for group in shared_builds(entries).values()):
        ref = entry.image_ref(options.repository)
        cache_ref = f"{options.repository}:buildcache-{entry.gpu}"
        targets[_target_name(entry)] = {
            "context": str(ROOT),
            "dockerfile": DOCKERFILE,
            "args": {**entry.build_args, "ROCMCI_FETCH_URL": fetch_url, "ROCMCI_BAKE_CA": "1" if options.bake_ca else "0"},
            "tags": [ref],
            "labels": build_time_labels(entry, options),
            "network": "host",
            "output": ["type=registry" if options.push else "type=docker"],
        }
        if options.registry_cache:
            # Needs a buildx builder whose driver exports caches (docker-container; the default `docker` driver cannot).
            targets[_target_name(entry)] |= {
                "cache-from": [f"type=registry,ref={cache_ref}"],
                "cache-to": [f"type=registry,ref={cache_ref},mode=max"],
            }
    return {"group": {BAKE_GROUP: {"targets": list(targets)}}, "target": targets}


# ---------------------------------------------------------------- the locally made base image


def ensure_local_base(base: BaseImage, progress: Progress) -> str:
    """Makes `rocmci/debian:bookworm` with debootstrap + docker import unless the engine has it already."""
    client = docker_client()
    ref = f"{base.name}:{base.tag}"
    try:
        client.images.get(ref)
        return ref
    except ImageNotFound:
        pass
    if shutil.which("debootstrap") is None:
        raise BuildError(
            f"base image {ref} is made locally with debootstrap, which is not installed (apt-get install debootstrap)"
        )
    progress.line(ref, "making base image", f"debootstrap {base.tag} minbase with {DEBOOTSTRAP_PACKAGES}")
    with tempfile.TemporaryDirectory(prefix="rocmci-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = ["debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_PACKAGES}", base.tag, str(rootfs), DEBIAN_MIRROR]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise BuildError(f"debootstrap of {base.tag} failed:\n{tail}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / leftover, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(rootfs, arcname=".")
        changes = [f'LABEL {MANAGED_LABEL}="true" io.rocmci.role="base"', 'CMD ["/bin/bash"]']
        client.api.import_image(src=str(tarball), repository=base.name, tag=base.tag, changes=changes)
    progress.line(ref, "base image ready")
    return ref


# ---------------------------------------------------------------- build-time file server


@dataclass
class FileServer:
    """Serves what a build may fetch but must not keep: the extra CA, the offline wheelhouse, local wheels."""

    root: Path
    port: int
    manifest: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.manifest else ""


@contextmanager
def file_server(options: BuildOptions, entries: list[Entry]) -> Iterator[FileServer]:
    with tempfile.TemporaryDirectory(prefix="rocmci-fetch-") as tmp:
        root = Path(tmp)
        manifest: dict = {}
        if options.ca_cert:
            shutil.copyfile(options.ca_cert, root / "ca.crt")
            manifest["ca"] = "ca.crt"
        if options.wheelhouse:
            wheels = sorted(p for p in options.wheelhouse.glob("*.whl"))
            if not wheels:
                raise BuildError(f"--wheelhouse {options.wheelhouse}: no wheels there (fill it with `invoke wheelhouse`)")
            (root / "wheelhouse").mkdir()
            for wheel in wheels:
                os.symlink(wheel.resolve(), root / "wheelhouse" / wheel.name)
            manifest["wheelhouse"] = [f"wheelhouse/{w.name}" for w in wheels]
        local = _local_wheels(entries)
        if local:
            (root / "wheels").mkdir()
            manifest["wheels"] = {}
            for url, path in local.items():
                os.symlink(path, root / "wheels" / path.name)
                manifest["wheels"][url] = f"wheels/{path.name}"
        git = _local_git_bundles(entries, root)
        if git:
            manifest["git"] = git
        if not manifest:
            yield FileServer(root=root, port=0, manifest=manifest)
            return
        (root / "manifest.json").write_text(json.dumps(manifest))
        httpd = _bind(functools.partial(_QuietHandler, directory=str(root)), options.fileserver_port)
        server = FileServer(root=root, port=httpd.server_address[1], manifest=manifest)
        # A short poll: shutdown() waits for it, and every `invoke build` (a no-op one too) ends with a shutdown.
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            httpd.shutdown()
            httpd.server_close()


FILESERVER_PORTS_TRIED = 10


def _bind(handler: functools.partial, first_port: int) -> http.server.ThreadingHTTPServer:
    """The port is part of a build arg, so the same port keeps the layer cache warm: the first free one of a few
    fixed ports is taken (another build on this host may hold the first)."""
    for port in range(first_port, first_port + FILESERVER_PORTS_TRIED):
        try:
            return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            continue
    last = first_port + FILESERVER_PORTS_TRIED - 1
    raise BuildError(f"cannot serve build files: ports {first_port}-{last} on 127.0.0.1 are taken (set ROCMCI_FILESERVER_PORT)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _local_wheels(entries: list[Entry]) -> dict[str, Path]:
    wheels = {}
    for entry in entries:
        url = entry.stack.aiter.wheel
        if url and url.startswith("file://"):
            path = Path(url.removeprefix("file://"))
            if not path.is_file():
                raise BuildError(f"{entry.id}: aiter wheel {url} does not exist")
            wheels[url] = path.resolve()
    return wheels


def _local_git_bundles(entries: list[Entry], root: Path) -> dict[str, str]:
    """file:// aiter repositories, served to the build as git bundles of every branch and tag (install_aiter.sh
    clones from the bundle: the build cannot see the host's files)."""
    served: dict[str, str] = {}
    for entry in entries:
        source = entry.stack.aiter.git
        if source is None or not source.repo.startswith("file://") or source.repo in served:
            continue
        if shutil.which("git") is None:
            raise BuildError(f"{entry.id}: the aiter repository {source.repo} is local, and git is not installed to bundle it")
        name = f"git/{len(served)}-{Path(source.repo).name}.bundle"
        (root / "git").mkdir(exist_ok=True)
        command = ["git", "-C", source.repo.removeprefix("file://"), "bundle", "create", str(root / name), "--all"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"{entry.id}: cannot bundle the aiter repository {source.repo}: {result.stderr.strip()}")
        served[source.repo] = name
    return served


# ---------------------------------------------------------------- backends


def context_tar() -> io.BytesIO:
    """The build context: exactly the directories the content hash covers, nothing else from the checkout."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in CONTEXT_DIRS:
            tar.add(ROOT / directory, arcname=directory, filter=_no_pycache)
    buffer.seek(0)
    return buffer


def _no_pycache(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name else info


def buildx_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False).returncode == 0


def buildx_driver() -> str:
    """The driver of the current buildx builder (`docker` drives the engine's own BuildKit)."""
    result = subprocess.run(["docker", "buildx", "inspect"], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("Driver:"):
            return line.split(":", 1)[1].strip()
    raise BuildError(f"docker buildx inspect: no builder ({(result.stderr or result.stdout).strip()})")


def sdk_build(
    entry: Entry, ref: str, args: dict[str, str], labels: dict[str, str], log, progress: Progress, no_cache: bool = False
) -> str:
    """The engine's legacy builder through the Docker SDK (no BuildKit: docker/docker-py#2230)."""
    client = docker_client()
    stream = client.api.build(
        fileobj=context_tar(),
        custom_context=True,
        dockerfile=DOCKERFILE,
        tag=ref,
        buildargs=args,
        labels=labels,
        network_mode="host",
        nocache=no_cache,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    image_id = None
    for chunk in stream:
        if "error" in chunk:
            log.write(chunk["error"] + "\n")
            raise BuildError(chunk["error"].strip().splitlines()[-1] if chunk["error"].strip() else "build failed")
        text = chunk.get("stream", "")
        if text:
            log.write(text)
            if text.startswith("Step "):
                progress.line(entry.id, "building", text.strip())
        image_id = chunk.get("aux", {}).get("ID", image_id)
    if image_id is None:
        raise BuildError("the engine reported no image id")
    return image_id


BUILDKIT_STEP = re.compile(r"^#\d+ \[\s*\d+/\d+\] ")


def bake_build(entry: Entry, options: BuildOptions, fetch_url: str, log, progress: Progress) -> str:
    """`docker buildx bake` with the generated bake file (BuildKit: what GitHub Actions runners have). Returns the
    pushed manifest digest from `--metadata-file` ("" without --push)."""
    with tempfile.TemporaryDirectory(prefix="rocmci-bake-") as tmp:
        bake_path, metadata_path = Path(tmp) / "bake.json", Path(tmp) / "metadata.json"
        bake_path.write_text(json.dumps(bake_file([entry], options, fetch_url)))
        command = ["docker", "buildx", "bake", "--allow", "network.host", "--progress", "plain"] + (
            ["--no-cache"] if options.no_cache else []
        )
        command += ["--metadata-file", str(metadata_path), "-f", str(bake_path), _target_name(entry)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        try:
            assert process.stdout is not None
            for text in process.stdout:
                log.write(text)
                if BUILDKIT_STEP.match(text):
                    progress.line(entry.id, "building", text.rstrip())
        finally:
            if process.poll() is None:
                process.terminate()
            returncode = process.wait()
        if returncode != 0:
            raise BuildError(f"docker buildx bake exited {returncode}")
        metadata = json.loads(metadata_path.read_text()).get(_target_name(entry), {})
    return metadata.get("containerimage.digest", "") if options.push else ""


def cached_steps_below_aiter(log_text: str, backend: Backend) -> tuple[int, int]:
    """(steps from the cache, steps) among the build steps below the aiter install, read from a build log."""
    if backend == "bake":
        headers = dict(re.findall(r"^#(\d+) \[\s*\d+/\d+\] (.*)$", log_text, flags=re.M))
        cached = set(re.findall(r"^#(\d+) CACHED$", log_text, flags=re.M))
        steps = [(instruction, step in cached) for step, instruction in sorted(headers.items(), key=lambda kv: int(kv[0]))]
    else:
        parts = re.split(r"^Step \d+/\d+ : ", log_text, flags=re.M)[1:]
        steps = [(part.splitlines()[0], "Using cache" in part) for part in parts if not part.startswith("ARG")]
    below = []
    for instruction, cached_step in steps:
        if instruction.startswith("RUN") and "install_aiter.sh" in instruction:
            return sum(c for _, c in below), len(below)
        if not instruction.startswith("FROM"):
            below.append((instruction, cached_step))
    raise BuildError("the build log has no aiter install step")


# ---------------------------------------------------------------- the build task


@dataclass(frozen=True)
class Existing:
    """What the engine and the registry already hold of an entry's content-hashed tag."""

    local: bool
    remote: bool
    note: str = ""


def _existing(entry: Entry, options: BuildOptions) -> Existing:
    from rocmci.errors import RegistryError
    from rocmci.oci import tag_exists

    try:
        image = docker_client().images.get(entry.image_ref(options.repository))
        # An image with a CA baked in (--bake-ca) stands for its tag only in a --bake-ca build, and the other way round.
        local = (image.labels.get(EXTRA_CA_LABEL) == "baked") == options.bake_ca
    except ImageNotFound:
        local = False
    if not options.check_registry:
        return Existing(local, False)
    try:
        return Existing(local, tag_exists(options.repository, entry.tag))
    except RegistryError as exc:
        if options.push:
            raise BuildError(f"cannot ask the registry for {entry.tag}: {exc}") from None
        return Existing(local, False, note=f"registry not asked ({exc})")


def _push(ref: str, progress: Progress, entry_id: str) -> str:
    """Pushes through the engine; returns the manifest digest the engine reports."""
    repository, tag = ref.rsplit(":", 1)
    digest = ""
    for chunk in docker_client().api.push(repository, tag=tag, stream=True, decode=True):
        error = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
        if error:
            raise BuildError(f"push of {ref} failed: {error}")
        if chunk.get("status") == "Pushed":
            progress.line(entry_id, "pushing", f"layer {chunk.get('id', '')} pushed")
        digest = chunk.get("aux", {}).get("Digest", digest)
    return digest


def build_entry(entry: Entry, options: BuildOptions, server: FileServer, backend: Backend, progress: Progress) -> BuildResult:
    """One entry: skipped when its tag exists, pushed only when it exists locally, else built (and pushed).
    Any failure marks this entry failed, untags it and lets the others go on."""
    ref = entry.image_ref(options.repository)
    options.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.log_dir / f"{entry.id}.log"
    started = time.monotonic()
    result = functools.partial(BuildResult, entry.id, ref, backend=backend)
    try:
        existing = _existing(entry, options)
        if existing.note:
            progress.line(entry.id, "warning", existing.note)
        if existing.remote or (existing.local and not options.push):
            reason = (
                f"tag present in {options.repository.split('/', 1)[0]}"
                if existing.remote
                else "image present in the local engine"
            )
            progress.line(entry.id, "skipped", f"{ref} ({reason})")
            return result("skipped", reason, backend="")
        if existing.local:
            progress.line(entry.id, "pushing", f"{ref} (built earlier, not in the registry yet)")
            digest = _push(ref, progress, entry.id)
            return result("built", "pushed the existing image", seconds=time.monotonic() - started, digest=digest)
        if entry.stack.base_image.local:
            ensure_local_base(entry.stack.base_image, progress)
        args = {**entry.build_args, "ROCMCI_FETCH_URL": server.url, "ROCMCI_BAKE_CA": "1" if options.bake_ca else "0"}
        progress.line(entry.id, "building", f"{ref} with the {backend} backend (log: {log_path})")
        digest = ""
        with log_path.open("w") as log:
            if backend == "bake":
                digest = bake_build(entry, options, server.url, log, progress)
            else:
                sdk_build(entry, ref, args, build_time_labels(entry, options), log, progress, options.no_cache)
        if options.push and backend != "bake":
            progress.line(entry.id, "pushing", ref)
            digest = _push(ref, progress, entry.id)
    except (BuildError, APIError, DockerBuildError, OSError) as exc:
        _untag(ref)
        progress.line(entry.id, "FAILED", f"{exc} (log: {log_path})")
        return result("failed", str(exc), log=log_path, seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    progress.line(entry.id, "built", f"{ref} in {seconds:.0f}s" + (f", pushed as {digest}" if digest else ""))
    return result("built", log=log_path, seconds=seconds, digest=digest)


def _untag(ref: str) -> None:
    """A failed build or push must leave no tag that looks like a good image."""
    with suppress(ImageNotFound, APIError):
        docker_client().images.remove(ref, noprune=True)


def choose_backend(requested: Backend) -> Backend:
    if requested == "auto":
        return "bake" if buildx_available() else "sdk"
    if requested == "bake" and not buildx_available():
        raise BuildError("--backend bake needs docker buildx, which this Docker client lacks (use --backend sdk)")
    return requested


def build_entries(plan: Plan, entries: list[Entry], options: BuildOptions, progress: Progress | None = None) -> list[BuildResult]:
    """Builds each shared image once (entries of one stack and gfx share it), isolating failures: one failed build
    never stops the others. One result per build, naming every entry that shares it."""
    progress = progress or Progress(width=max((len(e.id) for e in entries), default=0))
    if not entries:
        raise BuildError(f"{plan.source}: no entries selected")
    backend = choose_backend(options.backend)
    if options.registry_cache and backend != "bake":
        raise BuildError("--registry-cache needs the bake backend (docker buildx)")
    if options.registry_cache and (driver := buildx_driver()) == "docker":
        raise BuildError(f"--registry-cache: the buildx builder's driver ({driver}) cannot export a cache (use docker-container)")
    results = []
    with file_server(options, entries) as server:
        for tag, group in shared_builds(entries).items():
            ids = tuple(e.id for e in group)
            if len(ids) > 1:
                progress.line(ids[0], "shared", f"{tag}: one image for {', '.join(ids)}")
            results.append(replace(build_entry(group[0], options, server, backend, progress), entries=ids))
    return results


def summary(results: list[BuildResult]) -> str:
    rows = [
        (
            r.image_ref.rsplit(":", 1)[-1],
            ", ".join(r.entries or (r.entry_id,)),
            r.status,
            r.backend,
            f"{r.seconds:.0f}s" if r.seconds else "",
            r.detail or (f"{r.image_ref}@{r.digest}" if r.digest else r.image_ref),
            r.log or "",
        )
        for r in results
    ]
    return table(("image (shared build)", "entries", "status", "backend", "time", "detail", "log"), rows)


# ---------------------------------------------------------------- offline wheelhouse


def index_reachable(url: str, timeout_s: float = 5.0) -> bool:
    import requests

    try:
        return requests.head(url.rstrip("/") + "/", timeout=timeout_s, allow_redirects=True).status_code < 500
    except requests.RequestException:
        return False


def fill_wheelhouse(
    entries: list[Entry], dest: Path, use_torch_index: bool | None = None, progress: Progress | None = None
) -> list[Path]:
    """`pip download` on the host of everything the entries install, for builds with no index access.

    The stack's torch index is asked when reachable (`use_torch_index=None`); where it is not (air-gapped hosts, or
    this project's CI, which carries the CPU torch wheel locally), pip's own configured sources are used and the
    build gates still check that the torch obtained is the pinned build."""
    dest.mkdir(parents=True, exist_ok=True)
    progress = progress or Progress()
    for entry in entries:
        requirements = [f"torch=={entry.stack.torch.version}", "packaging"]
        if entry.stack.aiter.pypi:
            requirements.append(f"amd-aiter=={entry.stack.aiter.pypi}")
        if entry.stack.aiter.git:  # what install_aiter.sh installs to build aiter from source
            requirements += ["ninja", "pybind11", "setuptools", "setuptools-scm", "wheel"]
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--dest",
            str(dest),
            "--only-binary=:all:",
            "--python-version",
            entry.stack.python,
            *requirements,
        ]
        torch_index = index_reachable(entry.stack.torch.index) if use_torch_index is None else use_torch_index
        if torch_index:
            command += ["--extra-index-url", entry.stack.torch.index]
        else:
            progress.line(
                entry.id, "wheelhouse", f"{entry.stack.torch.index} not used (unreachable or off): pip's configured sources"
            )
        progress.line(entry.id, "wheelhouse", " ".join(requirements))
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"{entry.id}: pip download failed:\n" + "\n".join(result.stderr.splitlines()[-10:]))
    return sorted(dest.glob("*.whl"))
