"""The repository's documents stand alone: no Markdown file cites a file outside the repository (a path on the
machine it was written on, or a relative path that climbs out of the checkout)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helpers import ROOT

# The machine's workspace (worktrees, the shared notes); /tmp and cache paths in recorded commands are not citations.
ABSOLUTE = re.compile(r"(?<![\w.])/work/[^\s`)'\"]+")
CLIMBING = re.compile(r"(?<![\w./])((?:\.\./)+[^\s`)'\"]*)")


def markdown_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in listed.split()]


def outside_citations(path: Path) -> list[str]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        found += [f"{path.relative_to(ROOT)}:{number}: {m.group(0)}" for m in ABSOLUTE.finditer(line)]
        for match in CLIMBING.finditer(line):
            if not (path.parent / match.group(1)).resolve().is_relative_to(ROOT):
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(1)}")
    return found


def test_no_document_cites_a_file_outside_the_repository() -> None:
    files = markdown_files()
    assert ROOT / "benchmarks" / "RESULTS.md" in files and ROOT / "README.md" in files
    assert [hit for path in files for hit in outside_citations(path)] == []


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    document = ROOT / "docs" / f"{tmp_path.name}.md"
    document.write_text("see `/work/shared/FIELD-NOTES.md` and [x](../../elsewhere.md); [ok](../README.md), .../whl/\n")
    try:
        assert [hit.split(": ", 1)[1] for hit in outside_citations(document)] == [
            "/work/shared/FIELD-NOTES.md",
            "../../elsewhere.md",
        ]
    finally:
        document.unlink()
