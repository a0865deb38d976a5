"""matrix.yaml to a plan, in three passes (YAML, schema, meaning); each reports every problem it finds as one
`file:line: field: message` line, and a pass runs only when the one before it found nothing."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from rocmci.errors import MatrixError
from rocmci.plan.entries import Plan, expand
from rocmci.plan.rules import semantic_problems
from rocmci.plan.schema import Matrix
from rocmci.plan.schema_errors import schema_problems
from rocmci.plan.tags import ROOT, BuildContext
from rocmci.plan.yamlfile import LineIndex, parse_yaml, read_text

DEFAULT_MATRIX = ROOT / "matrix.yaml"


def parse_matrix(text: str, source: str = "matrix.yaml") -> tuple[Matrix, LineIndex]:
    """Parse and validate matrix.yaml's text; raises MatrixError listing every problem of the first pass that fails."""
    data, lines = parse_yaml(text, source)
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        raise MatrixError(sorted(schema_problems(exc, lines, source), key=lambda p: p.line or 0)) from None
    problems = semantic_problems(matrix, lines, source)
    if problems:
        raise MatrixError(problems)
    return matrix, lines


def load_plan(path: str | Path | None = None, context_root: Path = ROOT) -> Plan:
    source = Path(path) if path else DEFAULT_MATRIX
    matrix, lines = parse_matrix(read_text(source), str(source))
    return Plan(source=source, matrix=matrix, entries=expand(matrix, lines, str(source), BuildContext(context_root)))


def load_matrix(path: str | Path | None = None) -> Matrix:
    return load_plan(path).matrix


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rocmci.plan [FILE ...]`: print each entry's image tag, or every problem on stderr (exit 2)."""
    paths = list(sys.argv[1:] if argv is None else argv) or [str(DEFAULT_MATRIX)]
    if any(path.startswith("-") for path in paths):
        print("usage: python -m rocmci.plan [MATRIX.yaml ...]", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            plan = load_plan(path)
        except MatrixError as exc:
            print(exc, file=sys.stderr)
            status = exc.exit_code
            continue
        print("\n".join(entry.tag for entry in plan.entries))
    return status
