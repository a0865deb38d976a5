"""pip inside an image build, with what the host's build file server offers; nothing fetched stays in the layer.

The host (rocmci/build/fileserver.py) serves, on ROCMCI_FETCH_URL, a manifest.json naming:
  ca         an extra CA bundle (TLS-intercepting proxies), used for this pip run only unless ROCMCI_BAKE_CA=1;
  wheelhouse wheels for an offline install (`pip install --no-index --find-links`);
  wheels     local wheel files that a matrix names as file:// URLs;
  git        git bundles of the file:// aiter repositories a matrix names.
Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

BAKED_CA = Path("/usr/local/share/ca-certificates/rocmci-extra.crt")


def fetch_manifest(base_url: str) -> dict:
    if not base_url:
        return {}
    with urllib.request.urlopen(f"{base_url}/manifest.json", timeout=60) as response:
        return json.load(response)


def download(base_url: str, name: str, dest: Path) -> Path:
    target = dest / Path(name).name
    with urllib.request.urlopen(f"{base_url}/{name}", timeout=600) as response, target.open("wb") as out:
        shutil.copyfileobj(response, out)
    return target


def pip_args(base_url: str, manifest: dict, workdir: Path, args: list[str]) -> list[str]:
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir"]
    # `--online-index URL`: an index the build reaches even beside a wheelhouse (a pypi pin's own `index:`).
    online_index = args[args.index("--online-index") + 1] if "--online-index" in args else ""
    if online_index:
        at = args.index("--online-index")
        args = args[:at] + args[at + 2 :]
        command += ["--index-url", online_index]
    if manifest.get("ca"):
        command += ["--cert", str(download(base_url, manifest["ca"], workdir))]
    if manifest.get("wheelhouse"):
        house = workdir / "wheelhouse"
        house.mkdir()
        for name in manifest["wheelhouse"]:
            download(base_url, name, house)
        command += ([] if online_index else ["--no-index"]) + ["--find-links", str(house)]
    local_wheels = manifest.get("wheels", {})
    for arg in args[1:]:
        command.append(str(download(base_url, local_wheels[arg], workdir)) if arg in local_wheels else arg)
    return command


def git_source(base_url: str, manifest: dict, url: str, dest: Path) -> str:
    """Where to clone `url` from: a file:// repository of the host arrives as a git bundle, other URLs as they are."""
    served = manifest.get("git", {}).get(url)
    return str(download(base_url, served, dest)) if served else url


def bake_ca(base_url: str, manifest: dict) -> None:
    if os.environ.get("ROCMCI_BAKE_CA") != "1" or not manifest.get("ca"):
        return
    BAKED_CA.parent.mkdir(parents=True, exist_ok=True)
    download(base_url, manifest["ca"], BAKED_CA.parent).rename(BAKED_CA)
    subprocess.run(["update-ca-certificates"], check=True)


def main(argv: list[str]) -> int:
    base_url = os.environ.get("ROCMCI_FETCH_URL", "").rstrip("/")
    manifest = fetch_manifest(base_url)
    if argv[:1] == ["--bake-ca-if-asked"]:
        bake_ca(base_url, manifest)
        return 0
    if argv[:1] == ["git-source"] and len(argv) == 3:
        print(git_source(base_url, manifest, argv[1], Path(argv[2])))
        return 0
    if argv[:1] != ["install"]:
        print("usage: rocmci_pip.py install ARGS... | git-source URL DIR | --bake-ca-if-asked", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rocmci-pip-") as tmp:
        command = pip_args(base_url, manifest, Path(tmp), argv)
        print("+", " ".join(command), flush=True)
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
