"""`invoke report`: render everything once from what is on disk, then write every file or none.

Reads `<reports>/<entry>/{result,probe,smoke}.json` (validate's) and, where publish left one, `publish.json`; writes
compat.json, compat.md, junit.xml, index.html and `<entry>/intoto.json`, nothing else."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rocmci import history
from rocmci.report.html import render_html
from rocmci.report.junit import render_junit
from rocmci.report.markdown import render_markdown
from rocmci.report.records import CompatReport, ReportPaths, collect, intoto_statement
from rocmci.report.verdict import VerdictName


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _stage(path: Path, text: str) -> Path:
    """Write `text` to a synced temp file beside `path` (same file system, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _replace_all(documents: Mapping[Path, str]) -> None:
    """Stage every file first, then rename each into place: a render or write that fails (a bad document, a full disk)
    leaves every previous file as it was, and no temp file behind."""
    staged: dict[Path, Path] = {}
    try:
        for path, text in documents.items():
            staged[path] = _stage(path, text)
        for path, tmp in list(staged.items()):
            os.replace(tmp, path)
            del staged[path]
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def json_text(doc: Any) -> str:
    """Strict JSON (no NaN/Infinity): what every standard parser reads."""
    return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False) + "\n"


def write_all(
    reports_dir: Path, entries: Sequence[Mapping[str, Any]], generated_at: str | None = None, judged: CompatReport | None = None
) -> ReportPaths:
    """Write compat.json, compat.md, junit.xml, index.html and <id>/intoto.json under reports_dir.

    `judged`: the report `collect` already made in this run (the pipeline judges before publishing, so that the verdict
    is computed once); its publish records are read again, since publish ran since. Everything is rendered before
    anything is written, and written through temp files renamed into place (compat.json last), so a failed report run
    leaves the previous report files intact."""
    reports_dir = Path(reports_dir)
    compat_json = reports_dir / "compat.json"
    report = collect(reports_dir, entries, generated_at) if judged is None else judged.with_publish_records()
    documents = {
        reports_dir / "compat.md": render_markdown(report),
        reports_dir / "junit.xml": render_junit(report),
        reports_dir / "index.html": render_html(report, history.saved(reports_dir)),
    }
    intoto: dict[str, Path] = {}
    stale: list[Path] = []
    for item in report.entries:
        path = item.evidence.entry_dir / "intoto.json"
        if item.verdict.verdict == VerdictName.NOT_RUN:
            if item.evidence.entry_dir.is_dir():
                stale.append(path)
            continue
        documents[path] = json_text(intoto_statement(item))
        intoto[item.id] = path
    documents[compat_json] = json_text(report.to_json())
    _replace_all(documents)
    for path in stale:
        path.unlink(missing_ok=True)
    return ReportPaths(
        compat_json=compat_json,
        compat_md=reports_dir / "compat.md",
        junit_xml=reports_dir / "junit.xml",
        index_html=reports_dir / "index.html",
        intoto=intoto,
        report=report,
    )
