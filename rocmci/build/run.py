"""The build task: each shared image built once (skipped when its content-hashed tag exists), failures isolated,
pushed where asked, with a summary table."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from docker.errors import APIError, ImageNotFound
from docker.errors import BuildError as DockerBuildError

from rocmci.build.bake import bake_build, buildx_available, buildx_driver
from rocmci.build.base import ensure_local_base
from rocmci.build.fileserver import FileServer, file_server
from rocmci.build.options import Backend, BuildOptions, BuildResult, build_time_labels
from rocmci.build.record import record_for
from rocmci.build.sdk import push, sdk_build, untag
from rocmci.engine import docker_client
from rocmci.errors import BuildError
from rocmci.labels import EXTRA_CA_LABEL
from rocmci.plan import Entry, Plan, shared_builds
from rocmci.progress import Progress, table


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


def build_entry(entry: Entry, options: BuildOptions, server: FileServer, backend: Backend, progress: Progress) -> BuildResult:
    """One entry: skipped when its tag exists, pushed only when it exists locally, else built (and pushed). With
    --push, what the registry then serves under the tag is read back into the result's record.
    Any failure marks this entry failed, untags it and lets the others go on."""
    ref = entry.image_ref(options.repository)
    options.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.log_dir / f"{entry.id}.log"
    started = time.monotonic()
    result = functools.partial(BuildResult, entry.id, ref, backend=backend, build_id=entry.build_id)
    try:
        done = _build_or_skip(entry, options, server, backend, progress, log_path, result)
        if options.push:
            done = replace(done, record=record_for(done))
    except (BuildError, APIError, DockerBuildError, OSError) as exc:
        untag(ref)
        progress.line(entry.id, "FAILED", f"{exc} (log: {log_path})")
        return result("failed", str(exc), log=log_path, seconds=time.monotonic() - started)
    if done.status == "built":
        done = replace(done, seconds=time.monotonic() - started)
        digest = done.record.digest if done.record else done.digest
        progress.line(entry.id, "built", f"{ref} in {done.seconds:.0f}s" + (f", pushed as {digest}" if digest else ""))
    return done


def _build_or_skip(
    entry: Entry,
    options: BuildOptions,
    server: FileServer,
    backend: Backend,
    progress: Progress,
    log_path: Path,
    result: Callable[..., BuildResult],
) -> BuildResult:
    ref = entry.image_ref(options.repository)
    existing = _existing(entry, options)
    if existing.note:
        progress.line(entry.id, "warning", existing.note)
    if existing.remote or (existing.local and not options.push):
        reason = (
            f"tag present in {options.repository.split('/', 1)[0]}" if existing.remote else "image present in the local engine"
        )
        progress.line(entry.id, "skipped", f"{ref} ({reason})")
        return result("skipped", reason, backend="")
    if existing.local:
        progress.line(entry.id, "pushing", f"{ref} (built earlier, not in the registry yet)")
        return result("built", "pushed the existing image", digest=push(ref, progress, entry.id))
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
        digest = push(ref, progress, entry.id)
    return result("built", log=log_path, digest=digest)


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
