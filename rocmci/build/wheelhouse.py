"""The offline wheelhouse: every wheel the entries install, downloaded on the host for builds without index access."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rocmci.errors import BuildError
from rocmci.plan import Entry
from rocmci.progress import Progress


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
