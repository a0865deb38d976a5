"""matrix.yaml as YAML: read safely (a regular file, bounded size, no alias bombs, no duplicate keys), every field
path mapped to the line it is written on, and PyYAML's errors turned into one `file:line: message` each."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from rocmci import resources
from rocmci.errors import MatrixError, Problem
from rocmci.plan.schema import Matrix
from rocmci.plan.text import FieldPath, dotted, got

# Aliases can make a small file expand into an enormous tree ("billion laughs"); stop well before that hurts.
MAX_YAML_NODES = 250_000
MAX_MATRIX_BYTES = 4 << 20  # a matrix of every GPU and stack is a few KiB
MAX_YAML_DEPTH = 32
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"


class _LoaderErrors:
    """Turns a value PyYAML's constructors choke on (`!!int x`, `2001-13-45`) into a YAML error with its line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except yaml.YAMLError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {exc}", node.start_mark) from None


# libyaml when PyYAML has it (fast); PyYAML's own parser last, so error messages read the same on every machine.
LOADERS: tuple[type, ...] = tuple(
    type(f"_{base.__name__}", (_LoaderErrors, base), {})
    for base in (getattr(yaml, "CSafeLoader", None), yaml.SafeLoader)
    if base is not None
)


class LineIndex:
    """Maps a field path (tuple of keys and list indexes) to the 1-based line its key or item is written on."""

    def __init__(self) -> None:
        self.lines: dict[FieldPath, int] = {}

    def walk(self, node: yaml.Node, path: FieldPath) -> None:
        """Record every path under `node` once the loader has built it: `<<` merges are then flattened into each
        mapping, in whatever order this PyYAML merges them, and the last pair of a key is the one the dict kept."""
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            pairs = {
                _key_part(_scalar_key(key_node)): (key_node, value_node)
                for key_node, value_node in node.value
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG
            }
            for key, (key_node, value_node) in pairs.items():
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line_for(self, path: FieldPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _duplicate_keys(root: yaml.Node, source: str) -> list[Problem]:
    """Keys written twice in one mapping (PyYAML silently keeps the last); merged `<<` keys are not duplicates."""
    problems: list[Problem] = []
    visited: set[int] = set()

    def visit(node: yaml.Node, path: FieldPath) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, (*path, index))
            return
        first_lines: dict[Any, int] = {}
        for key_node, value_node in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                visit(value_node, path)
                continue
            key, line = _scalar_key(key_node), key_node.start_mark.line + 1
            if key in first_lines:
                message = (
                    f"duplicate key {key!r} (first on line {first_lines[key]}): expected each key once (YAML keeps only the last)"
                )
                problems.append(Problem(source, line, dotted((*path, str(key))), message))
            first_lines.setdefault(key, line)
            visit(value_node, (*path, _key_part(key)))

    visit(root, ())
    return problems


def _key_part(key: Any) -> str | int:
    """A mapping key as pydantic writes it in an error's loc: str and int as they are, bool as int, others by repr."""
    if isinstance(key, (str, int)):
        return int(key) if isinstance(key, bool) else key
    return repr(key)


class _KeyConstructor(_LoaderErrors, yaml.constructor.SafeConstructor):
    """Builds a mapping key the way the loader will (`1:` is the number 1), before the loader builds the document."""


def _scalar_key(node: yaml.ScalarNode) -> Any:
    return node.value if node.tag == STR_TAG else _KeyConstructor().construct_object(node, deep=True)


def _children(node: yaml.Node, path: FieldPath) -> Iterator[tuple[yaml.Node, FieldPath]]:
    if isinstance(node, yaml.SequenceNode):
        yield from ((item, (*path, index)) for index, item in enumerate(node.value))
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield key_node, path
            yield value_node, path if key_node.tag == MERGE_TAG else (*path, getattr(key_node, "value", "?"))


def _small_and_shallow(root: yaml.Node) -> bool:
    """Fast, conservative: True when the tree, aliases expanded, has few nodes and little depth (so no cycles)."""
    budget = MAX_YAML_NODES
    todo: list[tuple[yaml.Node, int]] = [(root, 0)]
    while todo:
        node, depth = todo.pop()
        budget -= 1
        if budget < 0 or depth > MAX_YAML_DEPTH:
            return False
        if isinstance(node, yaml.MappingNode):
            todo.extend((child, depth + 1) for pair in node.value for child in pair)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend((child, depth + 1) for child in node.value)
    return True


def _check_shape(root: yaml.Node, source: str) -> None:
    """Refuse alias cycles, alias bombs and deep nesting, without recursion, before anything walks the tree."""
    if _small_and_shallow(root):
        return
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    todo: list[tuple[yaml.Node, FieldPath, bool]] = [(root, (), False)]
    while todo:
        node, path, finished = todo.pop()
        if finished:
            ancestors.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child, _ in _children(node, path))
            if sizes[id(node)] > MAX_YAML_NODES:
                message = f"aliases expand this node past {MAX_YAML_NODES} YAML nodes: expected a matrix far smaller"
                raise MatrixError([Problem(source, node.start_mark.line + 1, dotted(path), message)])
            continue
        if id(node) in sizes:
            continue
        problem = (
            "expected aliases of nodes outside this one (got an alias of a node that contains it)"
            if id(node) in ancestors
            else ""
        )
        if len(path) > MAX_YAML_DEPTH:
            problem = f"expected at most {MAX_YAML_DEPTH} levels of nesting"
        if problem:
            raise MatrixError([Problem(source, node.start_mark.line + 1, dotted(path), problem)])
        ancestors.add(id(node))
        todo.append((node, path, True))
        todo.extend(reversed([(child, child_path, False) for child, child_path in _children(node, path)]))


def _load_yaml(text: str, source: str, loader_class: type) -> tuple[Any, LineIndex]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            message = "the file holds no YAML document (empty, or only comments): expected a mapping with version, targets, stacks, matrix"
            raise MatrixError([Problem(source, 1, "", message)])
        _check_shape(node, source)
        duplicates = _duplicate_keys(node, source)
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    if duplicates:
        raise MatrixError(duplicates)
    index = LineIndex()
    index.walk(node, ())
    if not isinstance(data, dict):
        expected = f"expected a mapping with keys {', '.join(Matrix.model_fields)} at the top level"
        raise MatrixError([Problem(source, node.start_mark.line + 1, "", f"{expected} (got {got(data)})")])
    return data, index


def _yaml_problem(exc: yaml.YAMLError, text: str, source: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        message = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    else:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        message = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark and context_mark is not mark:
            start = context_mark.line + 1
            but = message.startswith("but ")
            message = f"{context} (line {start}), {message}" if but else f"{message} ({context} that starts on line {start})"
    hints: dict[str, str] = resources.load("matrix-messages.yaml")["yaml_hints"]
    hint = next((hint for phrase, hint in hints.items() if phrase in message), None)
    return Problem(source, line, "", f"malformed YAML: {message}" + (f"; {hint}" if hint else ""))


def parse_yaml(text: str, source: str) -> tuple[Any, LineIndex]:
    problem: Problem | None = None
    for loader_class in LOADERS:
        try:
            return _load_yaml(text, source, loader_class)
        except yaml.YAMLError as exc:
            problem = _yaml_problem(exc, text, source)
        except RecursionError:  # PyYAML's own parser composes recursively; libyaml does not
            problem = Problem(source, 1, "", f"malformed YAML: expected at most {MAX_YAML_DEPTH} levels of nesting")
    raise MatrixError([problem] if problem else [])


def read_text(source: Path) -> str:
    """Only a regular file, and only up to MAX_MATRIX_BYTES: /dev/zero would be read until memory runs out, a FIFO
    would wait for a writer forever."""
    try:
        if not stat.S_ISREG(source.stat().st_mode):
            raise MatrixError([Problem(str(source), None, "", "not a regular file: give the path of a YAML matrix file")])
        with source.open("rb") as handle:
            data = handle.read(MAX_MATRIX_BYTES + 1)
    except OSError as exc:
        raise MatrixError([Problem(str(source), None, "", f"cannot read the matrix file: {exc.strerror}")]) from None
    if len(data) > MAX_MATRIX_BYTES:
        raise MatrixError([Problem(str(source), None, "", f"larger than {MAX_MATRIX_BYTES} bytes: not a matrix file")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MatrixError([Problem(str(source), line, "", f"expected UTF-8 text (got byte 0x{data[exc.start]:02x})")]) from None
