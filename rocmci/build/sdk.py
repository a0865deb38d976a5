"""The SDK backend: the engine's legacy builder through the Docker SDK (no BuildKit: docker/docker-py#2230), and
pushes and untagging through the engine."""

from __future__ import annotations

import io
import tarfile
from contextlib import suppress

from docker.errors import APIError, ImageNotFound

from rocmci.build.bake import DOCKERFILE
from rocmci.engine import docker_client
from rocmci.errors import BuildError
from rocmci.plan import CONTEXT_DIRS, ROOT, Entry
from rocmci.progress import Progress


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


def push(ref: str, progress: Progress, entry_id: str) -> str:
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


def untag(ref: str) -> None:
    """A failed build or push must leave no tag that looks like a good image."""
    with suppress(ImageNotFound, APIError):
        docker_client().images.remove(ref, noprune=True)
