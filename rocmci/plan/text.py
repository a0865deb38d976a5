"""How matrix.yaml's problems name fields and values: one problem, one printable line."""

from __future__ import annotations

from typing import Any

# A field's place in the document: keys and list indexes from the top, e.g. ("stacks", "local", "torch").
FieldPath = tuple[Any, ...]


def dotted(path: FieldPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if type(part) is int else (f".{part}" if text else str(part))
    return printable(text)


def printable(text: str) -> str:
    """Escape newlines and other control characters from names in the file: one problem, one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, dict)):
        noun = "list" if isinstance(value, list) else "mapping"
        return f"a {noun}" if value else f"an empty {noun}"
    return f"{type(value).__name__} {value}"
