"""The Docker engine connection, shared by build, run, registry, doctor and clean."""

from __future__ import annotations

import functools
import os

import docker
from docker.errors import DockerException

from rocmci import labels
from rocmci.errors import EngineUnavailable

MANAGED_LABEL = labels.MANAGED_LABEL
# Longer than any check step (RunOptions.step_timeout_s in rocmci/validate/entries.py): a silent step must end by its own timeout, not the socket's.
DEFAULT_TIMEOUT_S = 3600


@functools.cache
def docker_client() -> docker.DockerClient:
    """A client for DOCKER_HOST (or the default socket), checked with a ping so failures say how to fix them."""
    timeout = os.environ.get("ROCMCI_DOCKER_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    if not timeout.isdigit():
        raise EngineUnavailable(f"ROCMCI_DOCKER_TIMEOUT: expected a whole number of seconds (got {timeout!r})")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except (DockerException, OSError) as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineUnavailable(
            f"Docker engine not reachable at {where}: {exc}. Start it (scripts/setup-host starts dockerd) or set DOCKER_HOST."
        ) from None
    return client
