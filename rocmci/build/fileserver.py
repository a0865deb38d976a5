"""The build-time file server: what a build may fetch but must not keep (the extra CA, the offline wheelhouse, local
wheels, local aiter repositories as git bundles), served on loopback for the length of a build."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rocmci.build.options import BuildOptions
from rocmci.errors import BuildError
from rocmci.plan import Entry


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
