"""OCI references, digests, descriptors and manifests: the vocabulary every registry module shares.

Also which local image a manifest is (`image_store`, `image_mismatch`): the classic image store names an image by its
config digest, the containerd store by its manifest digest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rocmci.errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
REPORT_ARTIFACT_TYPE = "application/vnd.rocmci.compat-report.v1+json"
INTOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
VERDICTS = ("pass", "fail", "error", "not-run")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
DOCKER_HUB = "registry-1.docker.io"
USER_ENV, PASSWORD_ENV = "ROCMCI_REGISTRY_USER", "ROCMCI_REGISTRY_PASSWORD"
TIMEOUT_ENV = "ROCMCI_REGISTRY_TIMEOUT"
_DIGEST_RE = re.compile(r"^(sha256):([0-9a-f]{64})$|^(sha512):([0-9a-f]{128})$")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")

Log = Callable[[str], None]


def registry_timeout() -> float:
    """Seconds per registry request, from ROCMCI_REGISTRY_TIMEOUT (default 60); read when a registry task runs."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return 60.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise RegistryError(f"{TIMEOUT_ENV}: expected a number of seconds > 0 (got {text!r})")
    return seconds


def refuse_credentials(reference: str) -> None:
    """A repository reference never carries credentials (`user:password@host/repo`); the message never shows them."""
    if "@" in reference:
        after = reference.rsplit("@", 1)[1]
        raise RegistryError(
            f"registry reference <credentials>@{after}: credentials do not go in a reference; "
            f"use the Docker config (docker login {after.split('/', 1)[0]}) or set {USER_ENV}/{PASSWORD_ENV}"
        )


def split_repository(repository: str) -> tuple[str, str]:
    """`127.0.0.1:5000/rocmci` -> (`127.0.0.1:5000`, `rocmci`); Docker Hub names map to registry-1.docker.io."""
    refuse_credentials(repository)
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        host, name = first, rest
    else:
        host, name = DOCKER_HUB, repository if rest else f"library/{repository}"
    if host in {"docker.io", "index.docker.io"}:
        host = DOCKER_HUB
    if not re.fullmatch(r"[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*", name):
        raise RegistryError(f"invalid repository name {name!r} in {repository!r} (lowercase path components only)")
    return host, name


def check_digest(digest: str) -> tuple[str, str]:
    match = _DIGEST_RE.fullmatch(digest or "") if isinstance(digest, str) else None
    if not match:
        raise RegistryError(f"not a digest: {digest!r} (expected sha256:<64 hex>)")
    algorithm, hexpart = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return algorithm, hexpart


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def fallback_tag(digest: str) -> str:
    """The OCI referrers tag schema: `<alg>-<hex>`, truncated to 128 characters."""
    algorithm, hexpart = check_digest(digest)
    return f"{algorithm}-{hexpart}"[:128]


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    data: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = self.data
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Descriptor:
        try:
            check_digest(raw["digest"])
            return cls(
                media_type=str(raw["mediaType"]),
                digest=raw["digest"],
                size=int(raw["size"]),
                artifact_type=raw.get("artifactType"),
                annotations=dict(raw.get("annotations") or {}),
                data=raw.get("data"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"malformed descriptor {json.dumps(raw)[:200]}: {exc}") from None

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes, **extra: Any) -> Descriptor:
        return cls(media_type=media_type, digest=digest_of(data), size=len(data), **extra)


EMPTY_DESCRIPTOR = Descriptor(EMPTY_MEDIA_TYPE, EMPTY_DIGEST, 2, data="e30=")


@dataclass(frozen=True)
class Manifest:
    """Manifest bytes exactly as the registry serves them (re-serializing would change the digest)."""

    media_type: str
    digest: str
    body: bytes = field(repr=False)

    @property
    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError:
            raise RegistryError(f"manifest {self.digest} is not JSON") from None
        if not isinstance(data, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return data

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.body))


# ---------------------------------------------------------------- which local image a manifest is


def image_store(info: Mapping[str, Any]) -> str:
    """From the engine's `docker info`: `containerd` when it keeps images in containerd (DriverStatus has driver-type
    io.containerd.snapshotter.v1): there the image id is the manifest (or index) digest; else `classic`, where the
    image id is the config digest."""
    status = info.get("DriverStatus") or []
    containerd = any(
        isinstance(pair, list | tuple)
        and len(pair) == 2
        and pair[0] == "driver-type"
        and "containerd.snapshotter" in str(pair[1])
        for pair in status
    )
    return "containerd" if containerd else "classic"


def config_digest(manifest: Manifest) -> str | None:
    if manifest.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        return None
    config = manifest.json.get("config")
    return config.get("digest") if isinstance(config, dict) else None


def image_mismatch(manifest: Manifest, image_id: str, store: str) -> str | None:
    """None when `manifest` is the local image `image_id` of an engine with this image store; else what it is."""
    if store == "containerd":
        return None if manifest.digest == image_id else f"the manifest is {manifest.digest}, not {image_id}"
    config = config_digest(manifest)
    return None if config == image_id else f"its config is {config}, not {image_id}"
