"""What one validation produced: the outcome of each step, the run's result, and result.json written from it;
plus the summary table `invoke validate` ends with."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocmci.labels import RESULT_SCHEMA
from rocmci.plan import Entry
from rocmci.progress import table


@dataclass
class StepOutcome:
    exit_code: int | None
    wall_s: float
    log: str
    skipped: str | None = None

    def as_json(self) -> dict:
        return {"exit_code": self.exit_code, "wall_s": round(self.wall_s, 3), "log": self.log, "skipped": self.skipped}


@dataclass
class RunResult:
    entry_id: str
    image_ref: str
    directory: Path
    probe: StepOutcome | None = None
    smoke: StepOutcome | None = None
    error: str | None = None
    image: dict[str, Any] = field(default_factory=dict)
    started: str = field(default_factory=lambda: _now())
    phase: str = "preparing"
    render_nodes: list[str] = field(default_factory=list)  # the GPUs the check container was given (renderD<N>)

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        codes = [s.exit_code for s in (self.probe, self.smoke) if s and s.skipped is None]
        return "ok" if codes and all(c == 0 for c in codes) else "checks failed"


def discard(entry_dir: Path) -> None:
    """Take an earlier result out of the way in one rename, before anything runs: from here on, however this run
    ends (an error, Ctrl-C, a dying engine), no older pass can stand in for it."""
    if not entry_dir.exists() and not entry_dir.is_symlink():
        return
    if entry_dir.is_dir() and not entry_dir.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{entry_dir.name}.discarded.", dir=entry_dir.parent))
        os.replace(entry_dir, aside / entry_dir.name)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        entry_dir.unlink()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _gpu_seen(probe_json: Path) -> dict:
    """The GPU the probe saw inside the container (name, gfx, count), for the report's host column; only plain values
    are taken from the document (it comes from inside the image under test)."""
    try:
        gpu = json.loads(probe_json.read_text()).get("gpu") or {}
        name, gfx, count = gpu.get("name"), gpu.get("gfx"), gpu.get("count")
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    return {
        "gpu_name": name if isinstance(name, str) else None,
        "gfx": gfx if isinstance(gfx, str) else None,
        "device_count": count if type(count) is int else None,
    }


def write_result(work: Path, entry: Entry, result: RunResult, dev_root: Path) -> None:
    """result.json; `host.gpu_devices` are the host's render nodes the container was given (not every GPU of the host)."""
    from rocmci.contracts import HostInfo, ImageInfo, ResultDoc, StepRecord  # pydantic: only when a run writes results

    document = ResultDoc(
        schema=RESULT_SCHEMA,
        entry=entry.summary(),
        image=ImageInfo(ref=result.image_ref, **result.image),
        host=HostInfo(
            hostname=socket.gethostname(),
            gpu_devices=[str(dev_root / "dri" / name) for name in result.render_nodes],
            **_gpu_seen(work / "probe.json"),
        ),
        started=result.started,
        finished=_now(),
        steps={name: StepRecord(**step.as_json()) for name, step in (("probe", result.probe), ("smoke", result.smoke)) if step},
        error=result.error,
    )
    (work / "result.json").write_text(document.to_json(), encoding="utf-8")


def strict_json(document: Any) -> str:
    """The JSON rocmci writes: standard (no NaN/Infinity), indented, newline-terminated."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def summary(results: list[RunResult]) -> str:
    def step(outcome: StepOutcome | None) -> str:
        if outcome is None:
            return "-"
        return "skipped" if outcome.skipped else f"exit {outcome.exit_code} ({outcome.wall_s:.1f}s)"

    rows = [
        (r.entry_id, ",".join(r.render_nodes) or "-", step(r.probe), step(r.smoke), r.status, r.error or r.directory)
        for r in results
    ]
    return table(("entry", "gpus", "probe", "smoke", "status", "detail"), rows)
