"""Registry credentials: ROCMCI_REGISTRY_USER/ROCMCI_REGISTRY_PASSWORD, else the Docker config as the Docker CLI reads it.

The Docker config (auths, credHelpers, credsStore, identity tokens) is read by the Docker SDK's own helpers
(`docker.auth.load_config` and `AuthConfig.resolve_authconfig`), imported when credentials are first needed.
"""

from __future__ import annotations

import base64
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocmci.oci.reference import DOCKER_HUB, PASSWORD_ENV, USER_ENV


@dataclass(frozen=True)
class Credentials:
    """Registry credentials; `source` names where they came from, the secret never appears in repr or messages."""

    username: str = field(repr=False)
    password: str = field(repr=False)
    source: str = ""
    identity_token: bool = False

    def secrets(self) -> list[str]:
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return [s for s in (self.password, basic) if len(s) >= 3]


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _credentials(found: Mapping[str, Any], source: str) -> Credentials | None:
    """From the SDK's answer: `IdentityToken`, or `Username`/`Password` (a helper) or `username`/`password` (auths)."""
    if found.get("IdentityToken"):
        return Credentials("<token>", str(found["IdentityToken"]), source, identity_token=True)
    password = found.get("Password") or found.get("password")
    if password:
        return Credentials(str(found.get("Username") or found.get("username") or ""), str(password), source)
    return None


def load_credentials(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """ROCMCI_REGISTRY_USER/ROCMCI_REGISTRY_PASSWORD, else the Docker config (credHelpers, credsStore, auths)."""
    env = os.environ if env is None else env
    if env.get(USER_ENV) and env.get(PASSWORD_ENV):
        return Credentials(env[USER_ENV], env[PASSWORD_ENV], f"environment ({USER_ENV}/{PASSWORD_ENV})")
    path = docker_config_path()
    if not path.is_file():
        return None
    from docker import auth
    from docker.errors import DockerException

    server = None if host == DOCKER_HUB else host  # the SDK's name for Docker Hub (index.docker.io in helpers)
    try:
        with warnings.catch_warnings():  # the SDK warns of a helper not on PATH, then fails its lookup: no credentials
            warnings.simplefilter("ignore", UserWarning)
            config = auth.load_config(config_path=str(path))
            helper = config.get_credential_store(server) if (config.creds_store or config.cred_helpers) else None
            found = config.resolve_authconfig(server)
    except (DockerException, OSError, ValueError):  # a missing or failing helper: no credentials from it
        return None
    if not found:
        return None
    from_helper = helper and "ServerAddress" in found  # the SDK's auths entries spell it `serveraddress`
    source = f"credential helper docker-credential-{helper}" if from_helper else f"docker config {path}"
    return _credentials(found, source)
