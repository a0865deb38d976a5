"""pydantic's validation errors as matrix.yaml problems: each names the file, line and field, and says in words what the
schema expected there (from the field's description) and what the file holds."""

from __future__ import annotations

import difflib
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from rocmci import resources
from rocmci.errors import Problem
from rocmci.plan.schema import Matrix
from rocmci.plan.text import FieldPath, dotted, got
from rocmci.plan.yamlfile import LineIndex


def _type_words() -> dict[str, str]:
    return resources.load("matrix-messages.yaml")["type_words"]


def _unwrap(annotation: Any) -> tuple[Any, str | None]:
    """Strip `X | None` and `Annotated[X, ...]`, keeping the description an Annotated `Field` carries."""
    description = None
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *metadata = get_args(annotation)
            description = next((m.description for m in metadata if isinstance(m, FieldInfo) and m.description), description)
        elif origin in (Union, UnionType) and type(None) in get_args(annotation):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation, description


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _schema_at(loc: FieldPath) -> tuple[Any, str | None]:
    """The type matrix.yaml's schema expects at `loc` and its description; (None, None) off the schema."""
    annotation: Any = Matrix
    description: str | None = None
    for part in loc:
        annotation, _ = _unwrap(annotation)
        if _is_model(annotation):
            info = annotation.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return None, None
            annotation, description = info.annotation, info.description
        elif get_origin(annotation) in (list, dict):
            annotation, description = get_args(annotation)[-1], None
        else:
            return None, None
    annotation, described = _unwrap(annotation)
    return annotation, description or described


def _expected(loc: FieldPath, kind: str = "") -> str:
    annotation, description = _schema_at(loc)
    if description:
        return description
    if _is_model(annotation):
        return f"a mapping with keys {', '.join(annotation.model_fields)}"
    return _type_words().get(kind, "a value")


def _unknown_key(loc: FieldPath) -> str:
    annotation, _ = _schema_at(loc[:-1])
    known = list(annotation.model_fields) if _is_model(annotation) else []
    message = f"unknown key {loc[-1]!r}: expected one of {', '.join(known)}"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return message + (f" (did you mean {close[0]!r}?)" if close else "")


def _expected_for(error: Any) -> str | None:
    """What the schema wanted, in words, for one pydantic error; None for error types this schema never raises."""
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    if _is_key_error(error):
        return "a quoted name"
    if kind == "literal_error":
        return f"one of {ctx['expected'].replace(' or ', ', ')}"
    if kind == "too_short":
        return f"at least {ctx['min_length']} {'item' if ctx['min_length'] == 1 else 'items'}"
    if kind in {"greater_than", "greater_than_equal"}:
        bound = ctx.get("gt", ctx.get("ge"))
        return f"a number {'greater than' if kind == 'greater_than' else 'at least'} {bound:g}"
    if kind in {"less_than", "less_than_equal"}:
        bound = ctx.get("lt", ctx.get("le"))
        return f"a number {'less than' if kind == 'less_than' else 'at most'} {bound:g}"
    if kind == "finite_number":
        return "a finite number"
    if kind in _type_words() or kind == "model_type":
        return _expected(loc, kind)
    return None


def _schema_message(error: Any) -> str:
    kind, loc, value, ctx = error["type"], tuple(error["loc"]), error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return f"required field is missing: expected {_expected(loc)}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    expected = _expected_for(error)
    if expected is None:
        return f"{error['msg']} (got {got(value)})"
    # YAML reads 3.10 as the number 3.1: where text is wanted in quotes, say so.
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    hint = ": put the value in quotes so YAML reads it as text" if number and "quoted" in expected else ""
    return f"expected {expected} (got {got(value)}{hint})"


def _is_key_error(error: Any) -> bool:
    return error["type"] == "invalid_key" or tuple(error["loc"])[-1:] == ("[key]",)


def schema_problems(exc: ValidationError, lines: LineIndex, source: str) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if _is_key_error(error):
            # A key YAML read as a number, date or null; its loc part is `_key_part(key)`, like the line index's.
            key_loc = loc[:-1] if loc[-1:] == ("[key]",) else loc
            line, name = lines.line_for(key_loc), dotted((*key_loc[:-1], str(error["input"])))
        else:
            line, name = lines.line_for(loc), dotted(loc)
        problems.append(Problem(source, line, name, _schema_message(error)))
    return problems
