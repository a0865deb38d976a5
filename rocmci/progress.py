"""Progress lines per entry and the summary table every long task ends with."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO


class Progress:
    """Prefixed, flushed lines: `[mi355x-rocm7.2-...] building: Step 3/14 : RUN ...`."""

    def __init__(self, stream: TextIO | None = None, width: int = 0):
        self.stream = stream or sys.stdout
        self.width = width
        self.started = time.monotonic()

    def line(self, entry_id: str, phase: str, message: str = "") -> None:
        elapsed = time.monotonic() - self.started
        text = f"[{elapsed:6.1f}s] [{entry_id:<{self.width}}] {phase}" + (f": {message}" if message else "")
        print(text.rstrip(), file=self.stream, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
