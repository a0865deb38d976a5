"""Stage 1, the plan: matrix.yaml validated (every problem as `file:line: field: message`) and expanded into entries
with deterministic tags.

Modules: `schema` (the pydantic models), `yamlfile` (safe YAML with line numbers), `schema_errors` (schema errors in
words), `rules` (what the matrix must mean; domain tables from rocmci/resources), `tags` (ids, build args, content
hash, labels), `entries` (Entry, Plan, expansion), `load` (the three passes, `python -m rocmci.plan`), `github`
(GitHub Actions' matrix).
"""

from rocmci.errors import MatrixError
from rocmci.plan.entries import Entry, Plan, expand, shared_builds, variant_entry
from rocmci.plan.github import github_build_matrix, github_matrix
from rocmci.plan.load import DEFAULT_MATRIX, load_matrix, load_plan, main, parse_matrix
from rocmci.plan.rules import KNOWN_GPU_GFX
from rocmci.plan.schema import BaseImage, Builders, Gates, Matrix, Stack, Target, TorchPin
from rocmci.plan.tags import (
    CONTEXT_DIRS,
    PIN_LABELS,
    ROOT,
    BuildContext,
    build_args_for,
    content_hash,
    labels_for,
    validated_tag_for,
)
from rocmci.plan.yamlfile import MAX_MATRIX_BYTES

__all__ = [
    "CONTEXT_DIRS",
    "DEFAULT_MATRIX",
    "KNOWN_GPU_GFX",
    "MAX_MATRIX_BYTES",
    "PIN_LABELS",
    "ROOT",
    "BaseImage",
    "BuildContext",
    "Builders",
    "Entry",
    "Gates",
    "Matrix",
    "MatrixError",
    "Plan",
    "Stack",
    "Target",
    "TorchPin",
    "build_args_for",
    "content_hash",
    "expand",
    "github_build_matrix",
    "github_matrix",
    "labels_for",
    "load_matrix",
    "load_plan",
    "main",
    "parse_matrix",
    "shared_builds",
    "validated_tag_for",
    "variant_entry",
]
