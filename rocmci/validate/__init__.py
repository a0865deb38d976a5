"""Stage 3, validate: runs checks/ inside each built image on the GPUs assigned to the job, one container per entry,
probe then smoke, the container removed even on failure or Ctrl-C, raw results stored under reports/<entry id>/.

Modules: `host` (the host's GPUs and the job's assignment, shared with doctor), `spec` (what a container gets),
`container` (the check container and its steps), `results` (result.json and the summary table), `entries` (the entry
loop, sequential or `--parallel`), `staged` (`--pull`: the image the build recorded, by digest).

The names below are loaded on first use, so importing the package (as the task list does) loads no Docker SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunOptions": "entries",
    "Interrupted": "entries",
    "validate_entry": "entries",
    "validate_entries": "entries",
    "RunResult": "results",
    "StepOutcome": "results",
    "write_result": "results",
    "strict_json": "results",
    "summary": "results",
    "ContainerSpec": "spec",
    "container_spec": "spec",
    "probe_command": "spec",
    "smoke_command": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
