"""The plan as GitHub Actions' `strategy.matrix` takes it: one item per entry, or one per shared build."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rocmci.plan.entries import Entry, shared_builds


def github_matrix(entries: Iterable[Entry]) -> dict[str, list[dict[str, Any]]]:
    """The object GitHub Actions' `strategy.matrix: ${{ fromJSON(...) }}` takes."""
    return {"include": [entry.summary() for entry in entries]}


def github_build_matrix(entries: Iterable[Entry], staging_repository: str) -> dict[str, list[dict[str, Any]]]:
    """One item per shared build (the build job's matrix): its first entry's fields plus the ids and GPU models of
    every entry that validates the image, the builder's runner labels and the reference the build pushes to."""
    return {
        "include": [
            group[0].summary()
            | {
                "entries": [e.id for e in group],
                "gpus": [e.gpu for e in group],
                "builder_runs_on": list(group[0].builder_runs_on),
                "staging_ref": group[0].image_ref(staging_repository),
            }
            for group in shared_builds(entries).values()
        ]
    }
