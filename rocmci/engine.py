"""The Docker engine connection, shared by build, run, registry, doctor and clean."""

from __future__ import annotations

import functools
import os

import docker
from docker.errors import DockerException

from rocmci.errors import EngineUnavailable

MANAGED_LABEL = "io.rocmci.managed"


@functools.cache
def docker_client() -> docker.DockerClient:
    """A client for DOCKER_HOST (or the default socket), checked with a ping so failures say how to fix them."""
    try:
        client = docker.from_env(timeout=int(os.environ.get("ROCMCI_DOCKER_TIMEOUT", "600")))
        client.ping()
    except (DockerException, OSError) as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineUnavailable(
            f"Docker engine not reachable at {where}: {exc}. Start it (scripts/setup-host starts dockerd) or set DOCKER_HOST."
        ) from None
    return client
