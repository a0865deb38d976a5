"""README.md's code blocks are true: every YAML block validates (a whole matrix, a `targets:` fragment inside the
shipped matrix, or a list of torch pins), and every shell command is run here when it can be, else its flags are
checked against the command's own `--help`, with the reason it does not run here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rocmci.plan import DEFAULT_MATRIX, TorchPin, parse_matrix

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL)
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
# Commands that cannot run on this machine, by their first word(s), and why.
NOT_HERE = {
    "bash scripts/quickstart": "installs Docker, the registry and rocmci as root (what set this machine up)",
    "bash scripts/test": "runs this test suite",
    "oras": "needs oras and a remote registry holding rocmci images (the local path is tested in tests/test_lock.py)",
    "docker pull": "pulls from ghcr.io, which cannot be reached from here (tests/test_registry.py pulls from the local one)",
    "docker run": "needs /dev/kfd and /dev/dri: an AMD GPU",
    "./config.sh": "GitHub's runner registration, run on the GPU host",
}
# invoke tasks that change this machine or need what it lacks; the others run for real.
TASK_NOT_HERE = {
    "validate": "needs an AMD GPU for mi355x",
    "publish": "pushes to ghcr.io, which cannot be reached from here",
    "pull": "pulls a published image from a remote registry",
    "pipeline": "builds and validates ROCm images on an AMD runner",
    "build": "builds ROCm images (the local target's build is tested in tests/test_build.py)",
    "clean": "prunes rocmci's images on the shared engine",
    "base": "makes the base image with debootstrap as root",
    "wheelhouse": "downloads every wheel of the target's entries",
    "report": "writes reports/ from validation results this machine has not made",
}


def blocks(*langs: str) -> list[tuple[int, str, str]]:
    """(line, language, text with the block's indent removed) of each fenced block in README.md."""
    text = README.read_text()
    found = []
    for match in BLOCK.finditer(text):
        if match.group("lang") in langs:
            indent = len(match.group("indent"))
            body = "".join(line[indent:] for line in match.group("body").splitlines(keepends=True))
            found.append((text.count("\n", 0, match.start()) + 2, match.group("lang"), body))
    return found


def shell_commands() -> list[tuple[int, str]]:
    """Each command of the sh blocks (and of the unlabelled blocks that are commands), comments stripped."""
    commands = []
    for line, _lang, body in blocks("sh", ""):
        for offset, raw in enumerate(body.replace("\\\n", " ").splitlines()):
            command = re.sub(r"\s+#\s.*$", "", raw).strip()
            if command and not command.startswith("#"):
                commands.append((line + offset, command))
    return commands


def _help(argv: list[str]) -> str:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 0, f"{' '.join(argv)} failed: {done.stderr}"
    return done.stdout


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def _flags_documented(command: str, help_text: str) -> None:
    # invoke lists a boolean that defaults to true as --[no-]name
    negatable = {f"--no-{name}" for name in re.findall(r"--\[no-\]([a-z0-9-]+)", help_text)}
    missing = [flag for flag in FLAG.findall(command) if flag not in help_text and flag not in negatable]
    assert not missing, f"README: `{command}` names {', '.join(missing)}, which its --help does not list"


def _runnable(words: list[str]) -> bool:
    """No placeholders ([optional], <value>, G) and read-only: the plan, the bake file, the task list, help."""
    if any(w.startswith(("[", "<")) or w in {"G", "R", "ID", "|"} for w in words):
        return False
    task = words[1] if len(words) > 1 else ""
    return task in {"--list", "matrix", "--help"} or "--print" in words or "--help" in words


def _check_invoke(command: str) -> str | None:
    words = shlex.split(command)
    if words[1:2] == ["--list"]:
        listed = _help([sys.executable, "-m", "invoke", "--list"])
        assert "matrix" in listed and "doctor" in listed
        return None
    task = words[1]
    _flags_documented(command, _help([sys.executable, "-m", "invoke", "--help", task]))
    if _runnable(words):
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env()
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, f"`{command}`: {done.stderr}"
        return None
    if task == "doctor" and not Path("/dev/kfd").exists():
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env()
        )
        assert done.returncode == 1 and "NOT READY" in done.stdout, (done.stdout, done.stderr)  # as documented, here
        return None
    return TASK_NOT_HERE.get(task, "a synopsis with placeholders")


def _check_rocmci(command: str) -> str | None:
    words = shlex.split(command)
    console = [sys.executable, "-m", "rocmci.console"]
    if words[1:] == ["--help"]:
        _help([*console, "--help"])
        return None
    _flags_documented(command, _help([*console, words[1], "--help"]))
    return "talks to a remote registry (the installed command is run against the local one in tests/test_lock.py)"


def _check_other(command: str) -> str:
    words = shlex.split(command.replace("<", "'<").replace(">", ">'"))
    reason = next((why for start, why in NOT_HERE.items() if command.startswith(start)), None)
    assert reason, f"README: no rule for `{command}`: run it here, or add it to NOT_HERE with the reason it cannot run"
    if words[0] == "bash":
        script = ROOT / words[1]
        assert script.is_file(), f"README names {words[1]}, which does not exist"
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    elif words[0] == "docker" and shutil.which("docker"):
        _flags_documented(command, _help(["docker", words[1], "--help"]))
    return reason


@pytest.mark.parametrize(("line", "command"), shell_commands(), ids=[f"line{n}" for n, _ in shell_commands()])
def test_shell_command(line: int, command: str) -> None:
    words = command.split()
    if words[0] == ".":
        assert (ROOT / words[1]).is_file(), f"README line {line}: {words[1]} does not exist (run scripts/quickstart)"
        return
    if words[0] == "export":
        name = words[1].split("=", 1)[0]
        sources = "".join(p.read_text() for p in (ROOT / "rocmci").glob("*.py"))
        assert name in sources, f"README line {line}: rocmci reads no {name}"
        return
    checker = {"invoke": _check_invoke, "rocmci": _check_rocmci}.get(words[0], _check_other)
    reason = checker(command)
    if reason:
        pytest.skip(f"README line {line}: not run here: {reason} (what can be checked without running it was)")


def _validate_yaml_block(line: int, body: str) -> None:
    source = f"README.md:{line}"
    data: Any = yaml.safe_load(body) if "*" not in body else None
    if isinstance(data, list):
        for pin in data:
            TorchPin.model_validate(pin)
        return
    if isinstance(data, dict) and "version" in data:
        parse_matrix(body, source)
        return
    # A `targets:` fragment: it may use the shipped matrix's anchors, so it goes in at the end of its targets.
    assert body.startswith("targets:\n"), f"{source}: no rule for this YAML block"
    shipped = DEFAULT_MATRIX.read_text()
    at = shipped.index("\nstacks:")
    combined = shipped[:at] + "\n" + body.split("\n", 1)[1].rstrip() + shipped[at:]
    matrix, _lines = parse_matrix(combined, source)
    added = re.findall(r"^  ([A-Za-z0-9][\w.-]*):", body, re.MULTILINE)
    assert added and all(name in matrix.targets for name in added)


@pytest.mark.parametrize(
    ("line", "body"), [(n, b) for n, _, b in blocks("yaml")], ids=lambda v: f"line{v}" if isinstance(v, int) else ""
)
def test_yaml_block_validates(line: int, body: str) -> None:
    _validate_yaml_block(line, body)


def test_the_readme_has_blocks_to_check() -> None:
    assert len(blocks("yaml")) >= 3 and len(shell_commands()) >= 20
