"""The locally made Debian base image (debootstrap + docker import): no registry needed for the `local` stack."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from docker.errors import ImageNotFound

from rocmci.engine import docker_client
from rocmci.errors import BuildError
from rocmci.labels import MANAGED_LABEL, ROLE_LABEL
from rocmci.plan import BaseImage
from rocmci.progress import Progress

DEBOOTSTRAP_PACKAGES = "python3,python3-venv,ca-certificates"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_ROLE = "base"


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
        changes = [f'LABEL {MANAGED_LABEL}="true" {ROLE_LABEL}="{BASE_ROLE}"', 'CMD ["/bin/bash"]']
        client.api.import_image(src=str(tarball), repository=base.name, tag=base.tag, changes=changes)
    progress.line(ref, "base image ready")
    return ref
