"""Deterministic names of what the plan asks for: entry and build ids, validated tags, build args, the content hash of
the build inputs and the labels that follow from the pins."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from rocmci.labels import (
    AITER_KERNELS_LABEL,
    AITER_LABEL,
    AITER_SOURCE_LABEL,
    BUILD_LABEL,
    CONTENT_HASH_LABEL,
    ENTRY_LABEL,
    FIXTURE_LABEL,
    GFX_LABEL,
    MANAGED_LABEL,
    PYTHON_LABEL,
    ROCM_LABEL,
    ROLE_LABEL,
    TORCH_INDEX_LABEL,
    TORCH_LABEL,
)
from rocmci.plan.schema import Stack, Target

ROOT = Path(__file__).resolve().parents[2]
HASH_SCHEME = "rocmci-tag/v2"  # v2: the GPU model left the build args (one build per stack and gfx)
# Files that go into every image: any change to them gives every entry a new tag.
CONTEXT_DIRS = ("images", "checks")
# A docker tag is at most 128 characters: the id, a dash and 12 hex digits of the content hash.
MAX_ID_LENGTH = 128 - 13
MAX_TAG_LENGTH = 128


@dataclass(frozen=True)
class BuildContext:
    """Digest of the files every image is built from (images/ and checks/): names, contents and executable bits."""

    root: Path

    @cached_property
    def digest(self) -> str:
        hasher = hashlib.sha256()
        for path in self._files():
            executable = b"x" if path.stat().st_mode & 0o111 else b"-"
            hasher.update(path.relative_to(self.root).as_posix().encode() + b"\0" + executable)
            hasher.update(hashlib.sha256(path.read_bytes()).digest())
        return hasher.hexdigest()

    def _files(self) -> Iterator[Path]:
        for directory in CONTEXT_DIRS:
            for path in sorted((self.root / directory).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    yield path


def entry_id(gpu: str, stack: Stack) -> str:
    platform = f"rocm{stack.rocm}" if stack.rocm else "cpu"
    raw = f"{gpu}-{platform}-torch{stack.torch.version}-aiter{stack.aiter.label}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def build_id(target: Target, stack: Stack) -> str:
    """What an image is built for: the stack's pins and the gfx (`cpu` for every cpu target), never the GPU model."""
    platform = f"{target.gfx}-rocm{stack.rocm}" if target.gfx else "cpu"
    raw = f"{platform}-torch{stack.torch.version}-aiter{stack.aiter.label}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def validated_tag_for(gpu: str, stack: str | None = None) -> str:
    """`<gpu>-<stack>-validated`: one GPU model and one stack; `<gpu>-validated` (stack None): the newest of any stack."""
    return f"{gpu}-{stack}-validated" if stack else f"{gpu}-validated"


def build_args_for(target: Target, stack: Stack) -> dict[str, str]:
    """Only what goes into the image: the GPU model is not in it, so entries of one stack and gfx share a build."""
    return {
        "BASE_IMAGE": stack.base_image.ref,
        "ROCM_VERSION": stack.rocm or "",
        "PYTHON_VERSION": stack.python,
        "TORCH_VERSION": stack.torch.version,
        "TORCH_INDEX_URL": stack.torch.index,
        "AITER_SOURCE": stack.aiter.kind,
        "AITER_SPEC": stack.aiter.spec,
        "AITER_VERSION": stack.aiter.label,
        "AITER_COMMIT": (stack.aiter.git and stack.aiter.git.commit) or "",
        "AITER_USE_SYSTEM_TRITON": "1" if stack.triton == "torch" else "0",
        "TRITON_SOURCE": "torch" if stack.triton == "torch" else "aiter",
        "TRITON_VERSION": "" if isinstance(stack.triton, str) else stack.triton.aiter,
        "GPU_ARCHS": target.gfx or "",
        "PREBUILD_KERNELS": "1" if stack.aiter.prebuilt_kernels else "0",
        "ROCMCI_TARGET": target.gfx or "cpu",
        "ROCMCI_FIXTURE": "1" if stack.fixture else "0",
        # Only when set, so that the tags of pins on pip's configured index stay as they were.
        **({"AITER_INDEX_URL": stack.aiter.index} if stack.aiter.index else {}),
    }


def content_hash(build_args: dict[str, str], context_digest: str) -> str:
    payload = json.dumps({"scheme": HASH_SCHEME, "args": build_args, "context": context_digest}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


# Image label -> Entry.summary() field: validate records these labels and the report checks them against the entry.
# An image is a shared build: its labels name the build, never an entry or GPU model.
PIN_LABELS = {
    BUILD_LABEL: "build",
    CONTENT_HASH_LABEL: "content_hash",
    TORCH_LABEL: "torch",
    AITER_LABEL: "aiter",
    GFX_LABEL: "gfx",
}


def labels_for(build: str, target: Target, stack: Stack, digest: str) -> dict[str, str]:
    """Labels that follow from the pins alone, the same for every entry sharing the build (no GPU model in them);
    build time labels (created, revision) are added by rocmci.build.options. `ENTRY_LABEL` names the build on an image
    (clean groups images by it); a validation container's `ENTRY_LABEL` names its entry."""
    return {
        "org.opencontainers.image.title": f"rocmci {build}",
        "org.opencontainers.image.description": (
            f"{target.gfx or 'cpu only'}: ROCm {stack.rocm or 'none'}, torch {stack.torch.version}, "
            f"aiter {stack.aiter.label} ({stack.aiter.kind})"
        ),
        "org.opencontainers.image.version": f"{build}-{digest[:12]}",
        "org.opencontainers.image.base.name": f"{stack.base_image.name}:{stack.base_image.tag}",
        "org.opencontainers.image.base.digest": stack.base_image.digest or "",
        MANAGED_LABEL: "true",
        ROLE_LABEL: "entry",  # not inherited from the base image's "base"
        ENTRY_LABEL: build,
        BUILD_LABEL: build,
        GFX_LABEL: target.gfx or "",
        ROCM_LABEL: stack.rocm or "",
        PYTHON_LABEL: stack.python,
        TORCH_LABEL: stack.torch.version,
        TORCH_INDEX_LABEL: stack.torch.index,
        AITER_LABEL: stack.aiter.label,
        AITER_SOURCE_LABEL: stack.aiter.spec,
        AITER_KERNELS_LABEL: "prebuilt" if stack.aiter.prebuilt_kernels else "jit-at-first-call",
        CONTENT_HASH_LABEL: digest,
        FIXTURE_LABEL: "true" if stack.fixture else "false",
    }
