"""matrix.yaml: schema, validation with file:line errors, expansion into entries with deterministic tags.

Validation runs in three passes; each reports every problem it finds as one `file:line: field: message` line, and
a pass runs only when the one before it found nothing, so no message describes a half-read file:
1. YAML: syntax, duplicate keys (PyYAML would silently keep the last one), recursive or exploding aliases;
2. schema (pydantic, strict): unknown keys, types, required fields, formats;
3. meaning: torch wheels per ROCm, aiter per gfx, target x stack pairing, unknown names, duplicate entry ids.
Line numbers point at the offending key (or list item); a value reached through an alias or a `<<` merge key points
at the line it is written on.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic.fields import FieldInfo

from rocmci import resources
from rocmci.errors import MatrixError, Problem
from rocmci.labels import (
    AITER_KERNELS_LABEL,
    AITER_LABEL,
    AITER_SOURCE_LABEL,
    BUILD_LABEL,
    CONTENT_HASH_LABEL,
    ENTRY_LABEL,
    FIXTURE_LABEL,
    GFX_LABEL,
    MANAGED_LABEL,
    PYTHON_LABEL,
    ROCM_LABEL,
    ROLE_LABEL,
    TORCH_INDEX_LABEL,
    TORCH_LABEL,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MATRIX = ROOT / "matrix.yaml"
HASH_SCHEME = "rocmci-tag/v2"  # v2: the GPU model left the build args (one build per stack and gfx)
# Files that go into every image: any change to them gives every entry a new tag.
CONTEXT_DIRS = ("images", "checks")

# Domain tables live in data files (rocmci/resources/*.yaml), not here.
_GPUS = resources.load("gpus.yaml")
_TORCH_WHEELS = resources.load("torch-rocm.yaml")
KNOWN_GFX = set(_GPUS["gfx"])
# The gfx of each GPU model rocmci knows: a target with one of these names must carry its gfx.
KNOWN_GPU_GFX: dict[str, str] = {name: model["gfx"] for name, model in _GPUS["models"].items()}
# torch minor release -> ROCm versions its wheels are published for on download.pytorch.org.
TORCH_ROCM_WHEELS: dict[str, tuple[str, ...]] = {minor: tuple(rocms) for minor, rocms in _TORCH_WHEELS["wheels"].items()}
# First aiter release whose kernels accept each gfx.
AITER_MIN_FOR_GFX = {gfx: Version(facts["aiter_min"]) for gfx, facts in _GPUS["gfx"].items()}
PYTORCH_INDEX_HOST: str = _TORCH_WHEELS["index_prefix"]
# A docker tag is at most 128 characters: the id, a dash and 12 hex digits of the content hash.
MAX_ID_LENGTH = 128 - 13
MAX_TAG_LENGTH = 128
# Aliases can make a small file expand into an enormous tree ("billion laughs"); stop well before that hurts.
MAX_YAML_NODES = 250_000
MAX_MATRIX_BYTES = 4 << 20  # a matrix of every GPU and stack is a few KiB
MAX_YAML_DEPTH = 32

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
IMAGE_NAME_PATTERN = r"[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9._-]+)*"


# ---------------------------------------------------------------- schema


def _text(pattern: str, expected: str, extra: Callable[[str], bool] | None = None) -> Any:
    """A string type that must match `pattern` (and `extra`); its error says what was expected and what was got."""
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value) or (extra is not None and not extra(value)):
            raise ValueError(f"expected {expected} (got {_got(value)})")
        return value

    return Annotated[str, AfterValidator(check), Field(description=expected)]


def _is_pep440(value: str) -> bool:
    try:
        Version(value)
    except InvalidVersion:
        return False
    return True


def _schema_version(value: int) -> int:
    if value != 1:
        raise ValueError(f"expected the schema version 1 (got {_got(value)})")
    return value


DevicePath = _text(r"/dev/\S+", "a device path under /dev/ such as /dev/kfd")
ShmSize = _text(r"[1-9][0-9]*[bkmgBKMG]?", "a /dev/shm size such as 16g or 512m")
ImageName = _text(IMAGE_NAME_PATTERN, "an image name such as rocm/dev-ubuntu-24.04")
ImageTag = _text(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "an image tag such as 7.2-complete")
Digest = _text(r"sha256:[0-9a-f]{64}", "a digest: sha256: and 64 lowercase hex digits")
RocmVersion = _text(r"[0-9]+\.[0-9]+(\.[0-9]+)?", 'a quoted ROCm version such as "7.2"')
PythonVersion = _text(r"3\.[0-9]+", 'a quoted Python version such as "3.12"')
TorchVersion = _text(
    r"[0-9]+\.[0-9]+\.[0-9]+\S*",
    "an exact torch version (PEP 440) such as 2.13.0, 2.8.0+rocm7.0.0.lw.git64359f59, or 2.10.0.dev20250801 with pre: true",
    _is_pep440,
)
IndexUrl = _text(r"(https?|file)://\S+", "a wheel index URL such as https://download.pytorch.org/whl/rocm7.2")
GitUrl = _text(r"(https://|ssh://|file://|git@)\S+", "a git URL such as https://github.com/ROCm/aiter")
# A release tag (the build gate compares the installed amd-aiter version with it) or a full commit hash (the gate
# compares the `+g<hash>` that setuptools_scm writes into aiter's version). A branch moves, so it pins nothing.
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
GitRef = _text(
    r"v?[0-9][A-Za-z0-9_.+-]*|[0-9a-f]{40}",
    "a release tag of aiter such as v0.1.20 or a full 40-hex commit hash (a branch pins nothing)",
    lambda ref: FULL_COMMIT.fullmatch(ref) is not None or _is_pep440(ref.removeprefix("v")),
)
TritonVersion = _text(r"[0-9]+\.[0-9]+\.[0-9]+", "a Triton release such as 3.7.0")
PypiVersion = _text(r"\S+", "an amd-aiter version on PyPI (PEP 440) such as 0.1.7.post2.dev18", _is_pep440)
WheelUrl = _text(
    r"(https?|file)://\S*/[A-Za-z0-9_.]+-[^-/\s]+(-[^-/\s]+)?-[^-/\s]+-[^-/\s]+-[^-/\s]+\.whl",
    "a wheel URL ending in a wheel file name such as .../amd_aiter-0.1.20-cp312-cp312-linux_x86_64.whl",
)
Repository = _text(IMAGE_NAME_PATTERN, "an image repository such as 127.0.0.1:5000/rocmci or ghcr.io/org/rocmci")
RunArg = _text(
    r"--cap-add=[A-Z_]+|--security-opt=\S+|--ulimit=[a-z]+=-?[0-9]+(:-?[0-9]+)?",
    "a docker run flag written with '=': --cap-add=SYS_PTRACE, --security-opt=seccomp=unconfined or --ulimit=nofile=65536:65536",
)
SchemaVersion = Annotated[int, AfterValidator(_schema_version), Field(description="the schema version 1")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DevicePolicy(_Model):
    devices: list[DevicePath] = Field(default_factory=list, description="a list of device paths such as [/dev/kfd, /dev/dri]")
    group_add: list[str] = Field(default_factory=list, description="a list of group names such as [video, render]")
    shm_size: ShmSize = "2g"
    network: Literal["none", "host", "bridge"] = "none"
    extra_run_args: list[RunArg] = Field(
        default_factory=list,
        description="a list of extra docker run flags: --cap-add=X, --security-opt=X, --ulimit=name=soft[:hard]",
    )


class Gates(_Model):
    k_norm_max_kernels: int = Field(default=1, ge=1, description="a whole number of kernels, at least 1")
    k_norm_min_speedup: float = Field(default=2.0, gt=0, description="a speedup factor such as 2.0")
    prefill_min_ceiling_frac: float = Field(
        default=0.4, gt=0, le=1, description="a fraction of the measured copy ceiling, above 0 and at most 1, such as 0.4"
    )


class Target(_Model):
    kind: Literal["amd", "cpu"] = "amd"
    gfx: str | None = Field(default=None, description="a gfx architecture: gfx942 or gfx950")
    hbm_gb: int | None = Field(default=None, gt=0, description="the HBM size in GB, a whole number such as 192")
    peak_bandwidth_tbs: float | None = Field(default=None, gt=0, description="the HBM peak bandwidth in TB/s such as 5.3")
    compute_units: int | None = Field(default=None, gt=0, description="the number of compute units, such as 304")
    runs_on: list[str] = Field(min_length=1, description="a list of runner labels such as [self-hosted, linux, mi355x]")
    device_policy: DevicePolicy = Field(default_factory=DevicePolicy)
    gates: Gates | None = None
    max_regression_pct: float = Field(
        default=5.0, ge=0, le=100, description="the largest fused-kernel slowdown in percent a promotion accepts, such as 5"
    )
    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        """The target's key in matrix.yaml's `targets`."""
        return self._name


class BaseImage(_Model):
    name: ImageName
    tag: ImageTag
    digest: Digest | None = None
    local: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


class TorchPin(_Model):
    version: TorchVersion
    index: IndexUrl
    pre: bool = Field(default=False, description="true to ask for a pre-release or nightly (.dev) torch")

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def is_prerelease(self) -> bool:
        """A nightly (.dev), alpha, beta or release candidate."""
        return Version(self.version).is_prerelease

    @property
    def built_for_rocm(self) -> str | None:
        """The ROCm major.minor a local version names: 2.8.0+rocm7.0.0.lw.git<sha> -> 7.0, 2.13.0+rocm7.2 -> 7.2."""
        found = re.match(r"rocm([0-9]+)\.([0-9]+)", Version(self.version).local or "")
        return f"{found.group(1)}.{found.group(2)}" if found else None


class GitSource(_Model):
    repo: GitUrl
    ref: GitRef

    @property
    def commit(self) -> str | None:
        """The pinned commit when `ref` is a commit hash, else None (a tag)."""
        return self.ref if FULL_COMMIT.fullmatch(self.ref) else None


class TritonFromAiter(_Model):
    aiter: TritonVersion = Field(description="the Triton version aiter's source build installs, such as 3.7.0")


class AiterSource(_Model):
    pypi: PypiVersion | None = None
    git: GitSource | None = None
    wheel: WheelUrl | None = None
    index: IndexUrl | None = Field(
        default=None, description="the package index (simple API) of a pypi pin, such as https://pypi.org/simple"
    )

    @model_validator(mode="after")
    def _index_only_for_pypi(self) -> AiterSource:
        if self.index is not None and self.pypi is None:
            raise ValueError("expected index only beside a pypi pin (git and wheel pins name their source themselves)")
        return self

    @model_validator(mode="after")
    def _exactly_one(self) -> AiterSource:
        given = [name for name in ("pypi", "git", "wheel") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of pypi, git, wheel (got {' and '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return "pypi" if self.pypi else "git" if self.git else "wheel"

    @property
    def pin_path(self) -> tuple[str, ...]:
        """Where the pin is written, relative to the stack's `aiter`."""
        return ("git", "ref") if self.git else (self.kind,)

    @property
    def spec(self) -> str:
        if self.pypi:
            return self.pypi
        if self.git:
            return f"{self.git.repo}@{self.git.ref}"
        return self.wheel or ""

    @property
    def label(self) -> str:
        """Version-ish string for ids: the PyPI version, the git ref without 'v', or the wheel's version."""
        if self.pypi:
            return self.pypi
        if self.git:
            ref = self.git.ref
            return ref[1:] if re.fullmatch(r"v[0-9].*", ref) else ref[:12]
        return (self.wheel or "").rsplit("/", 1)[-1].split("-")[1]

    @property
    def version(self) -> Version | None:
        if self.git and self.git.commit:
            return None
        try:
            return Version(self.label)
        except InvalidVersion:
            return None

    @property
    def prebuilt_kernels(self) -> bool:
        """Only a source build compiles module_norm into the image; the PyPI wheel JIT-builds at first call."""
        return self.git is not None


class Stack(_Model):
    base_image: BaseImage
    rocm: RocmVersion | None = None
    python: PythonVersion
    torch: TorchPin
    aiter: AiterSource
    # "torch": keep the Triton the torch index installs with torch (aiter's build runs with AITER_USE_SYSTEM_TRITON=1);
    # {aiter: X}: let aiter's source build replace it with triton X. The build gate checks the outcome either way.
    triton: Literal["torch"] | TritonFromAiter = Field(
        default="torch", description="\"torch\" (keep the torch index's Triton) or {aiter: VERSION} (aiter's build installs it)"
    )
    fixture: bool = False
    _name: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _triton_from_a_source_build(self) -> Stack:
        if isinstance(self.triton, TritonFromAiter) and self.aiter.git is None:
            raise ValueError("triton: {aiter: ...} needs a git aiter source: only aiter's source build installs Triton")
        return self

    @property
    def name(self) -> str:
        """The stack's key in matrix.yaml's `stacks`."""
        return self._name


class Include(_Model):
    gpu: str = Field(description="a GPU target name")
    stack: str = Field(description="a stack name")


class Exclude(_Model):
    gpu: str | None = Field(default=None, description="a GPU target name")
    stack: str | None = Field(default=None, description="a stack name")

    @model_validator(mode="after")
    def _not_empty(self) -> Exclude:
        if self.gpu is None and self.stack is None:
            raise ValueError("expected gpu, stack or both in an exclude rule (got neither)")
        return self


class Axes(_Model):
    gpu: list[str] = Field(default_factory=list, description="a list of GPU target names")
    stack: list[str] = Field(default_factory=list, description="a list of stack names")
    include: list[Include] = Field(default_factory=list, description="a list of {gpu, stack} pairs to add")
    exclude: list[Exclude] = Field(default_factory=list, description="a list of {gpu, stack} rules to drop")


class Matrix(_Model):
    version: SchemaVersion
    repository: Repository = "127.0.0.1:5000/rocmci"
    targets: dict[str, Target] = Field(min_length=1, description="a mapping of GPU target name to its settings")
    stacks: dict[str, Stack] = Field(min_length=1, description="a mapping of stack name to its pins")
    matrix: Axes
    gates: Gates = Field(default_factory=Gates)

    @model_validator(mode="after")
    def _name_children(self) -> Matrix:
        for name, target in self.targets.items():
            target._name = name
        for name, stack in self.stacks.items():
            stack._name = name
        return self


# ---------------------------------------------------------------- entries and plans


@dataclass(frozen=True)
class Entry:
    """One GPU model crossed with a stack: the unit of validation and reporting. Its image is the stack's build
    for the target's gfx (`build_id`, `tag`), shared with every entry of the same stack and gfx."""

    id: str
    gpu: str
    stack_name: str
    target: Target
    stack: Stack
    gates: Gates
    content_hash: str
    build_id: str
    build_args: dict[str, str] = field(hash=False)
    labels: dict[str, str] = field(hash=False)

    @property
    def tag(self) -> str:
        """The image's content-hashed tag: the same for every entry that shares the build."""
        return f"{self.build_id}-{self.content_hash[:12]}"

    @property
    def validated_tag(self) -> str:
        """The tag that names the newest image that passed on this GPU model with this stack."""
        return validated_tag_for(self.gpu, self.stack_name)

    @property
    def gfx(self) -> str | None:
        return self.target.gfx

    @property
    def is_amd(self) -> bool:
        return self.target.kind == "amd"

    @property
    def runs_on(self) -> list[str]:
        return list(self.target.runs_on)

    def image_ref(self, repository: str) -> str:
        return f"{repository}:{self.tag}"

    def summary(self) -> dict[str, Any]:
        """Flat, JSON-safe description: what reports, plans and GitHub Actions consume."""
        return {
            "id": self.id,
            "gpu": self.gpu,
            "gfx": self.gfx,
            "kind": self.target.kind,
            "stack": self.stack_name,
            "rocm": self.stack.rocm,
            "python": self.stack.python,
            "torch": self.stack.torch.version,
            "torch_index": self.stack.torch.index,
            "aiter": self.stack.aiter.label,
            "aiter_source": self.stack.aiter.kind,
            "aiter_spec": self.stack.aiter.spec,
            "aiter_kernels": "prebuilt" if self.stack.aiter.prebuilt_kernels else "jit-at-first-call",
            "base_image": self.stack.base_image.ref,
            "fixture": self.stack.fixture,
            "build": self.build_id,
            "tag": self.tag,
            "validated_tag": self.validated_tag,
            "content_hash": self.content_hash,
            "runs_on": self.runs_on,
            "peak_bandwidth_gbs": self.target.peak_bandwidth_tbs * 1000 if self.target.peak_bandwidth_tbs else None,
        }


@dataclass(frozen=True)
class Plan:
    """A validated matrix expanded into entries; `source` is the file it came from."""

    source: Path
    matrix: Matrix
    entries: tuple[Entry, ...]

    def select(self, gpu: str | None = None, entry_id: str | None = None) -> list[Entry]:
        if gpu is not None and gpu not in self.matrix.targets:
            known = ", ".join(sorted(self.matrix.targets))
            raise MatrixError([Problem(str(self.source), None, "--gpu", f"unknown GPU target {gpu!r} (known: {known})")])
        chosen = [e for e in self.entries if (gpu is None or e.gpu == gpu) and (entry_id is None or e.id == entry_id)]
        if entry_id is not None and not chosen:
            ids = ", ".join(e.id for e in self.entries if gpu is None or e.gpu == gpu)
            raise MatrixError([Problem(str(self.source), None, "--entry", f"no entry {entry_id!r} (entries: {ids})")])
        return chosen

    @property
    def repository(self) -> str:
        return self.matrix.repository


# ---------------------------------------------------------------- YAML with line numbers

Path_ = tuple[Any, ...]
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
_LOADERS: tuple[type, ...] = tuple(
    type(f"_{base.__name__}", (_LoaderErrors, base), {})
    for base in (getattr(yaml, "CSafeLoader", None), yaml.SafeLoader)
    if base is not None
)


class _LineIndex:
    """Maps a field path (tuple of keys and list indexes) to the 1-based line its key or item is written on."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}

    def walk(self, node: yaml.Node, path: Path_) -> None:
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

    def line_for(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _duplicate_keys(root: yaml.Node, source: str) -> list[Problem]:
    """Keys written twice in one mapping (PyYAML silently keeps the last); merged `<<` keys are not duplicates."""
    problems: list[Problem] = []
    visited: set[int] = set()

    def visit(node: yaml.Node, path: Path_) -> None:
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
                problems.append(Problem(source, line, _dotted((*path, str(key))), message))
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


def _children(node: yaml.Node, path: Path_) -> Iterator[tuple[yaml.Node, Path_]]:
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
    todo: list[tuple[yaml.Node, Path_, bool]] = [(root, (), False)]
    while todo:
        node, path, finished = todo.pop()
        if finished:
            ancestors.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child, _ in _children(node, path))
            if sizes[id(node)] > MAX_YAML_NODES:
                message = f"aliases expand this node past {MAX_YAML_NODES} YAML nodes: expected a matrix far smaller"
                raise MatrixError([Problem(source, node.start_mark.line + 1, _dotted(path), message)])
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
            raise MatrixError([Problem(source, node.start_mark.line + 1, _dotted(path), problem)])
        ancestors.add(id(node))
        todo.append((node, path, True))
        todo.extend(reversed([(child, child_path, False) for child, child_path in _children(node, path)]))


def _load_yaml(text: str, source: str, loader_class: type) -> tuple[Any, _LineIndex]:
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
    index = _LineIndex()
    index.walk(node, ())
    if not isinstance(data, dict):
        expected = f"expected a mapping with keys {', '.join(Matrix.model_fields)} at the top level"
        raise MatrixError([Problem(source, node.start_mark.line + 1, "", f"{expected} (got {_got(data)})")])
    return data, index


# What to do about PyYAML's errors whose wording names no fix, keyed by a phrase of the error.
_YAML_HINTS = {
    "'\\t'": "expected spaces for indentation, not tabs",
    "<block": "expected this line indented like its siblings",
    "undefined alias": "expected an anchor (&name) earlier in the file",
    "could not determine a constructor": "expected plain YAML values without !! or ! tags",
    "unhashable key": "expected a plain text key",
    "cannot read this value": "expected a value YAML can read (quote it to keep it as text)",
    "unacceptable character": "expected printable text",
}


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
    hint = next((hint for phrase, hint in _YAML_HINTS.items() if phrase in message), None)
    return Problem(source, line, "", f"malformed YAML: {message}" + (f"; {hint}" if hint else ""))


def _parse_yaml(text: str, source: str) -> tuple[Any, _LineIndex]:
    problem: Problem | None = None
    for loader_class in _LOADERS:
        try:
            return _load_yaml(text, source, loader_class)
        except yaml.YAMLError as exc:
            problem = _yaml_problem(exc, text, source)
        except RecursionError:  # PyYAML's own parser composes recursively; libyaml does not
            problem = Problem(source, 1, "", f"malformed YAML: expected at most {MAX_YAML_DEPTH} levels of nesting")
    raise MatrixError([problem] if problem else [])


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if type(part) is int else (f".{part}" if text else str(part))
    return _printable(text)


def _printable(text: str) -> str:
    """Escape newlines and other control characters from names in the file: one problem, one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _got(value: Any) -> str:
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


# ---------------------------------------------------------------- schema errors in words

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
}


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


def _schema_at(loc: Path_) -> tuple[Any, str | None]:
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


def _expected(loc: Path_, kind: str = "") -> str:
    annotation, description = _schema_at(loc)
    if description:
        return description
    if _is_model(annotation):
        return f"a mapping with keys {', '.join(annotation.model_fields)}"
    return _TYPE_WORDS.get(kind, "a value")


def _unknown_key(loc: Path_) -> str:
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
    if kind in _TYPE_WORDS or kind == "model_type":
        return _expected(loc, kind)
    return None


def _schema_message(error: Any) -> str:
    kind, loc, got, ctx = error["type"], tuple(error["loc"]), error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return f"required field is missing: expected {_expected(loc)}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    expected = _expected_for(error)
    if expected is None:
        return f"{error['msg']} (got {_got(got)})"
    # YAML reads 3.10 as the number 3.1: where text is wanted in quotes, say so.
    number = isinstance(got, (int, float)) and not isinstance(got, bool)
    hint = ": put the value in quotes so YAML reads it as text" if number and "quoted" in expected else ""
    return f"expected {expected} (got {_got(got)}{hint})"


def _is_key_error(error: Any) -> bool:
    return error["type"] == "invalid_key" or tuple(error["loc"])[-1:] == ("[key]",)


def _schema_problems(exc: ValidationError, lines: _LineIndex, source: str) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if _is_key_error(error):
            # A key YAML read as a number, date or null; its loc part is `_key_part(key)`, like the line index's.
            key_loc = loc[:-1] if loc[-1:] == ("[key]",) else loc
            line, name = lines.line_for(key_loc), _dotted((*key_loc[:-1], str(error["input"])))
        else:
            line, name = lines.line_for(loc), _dotted(loc)
        problems.append(Problem(source, line, name, _schema_message(error)))
    return problems


# ---------------------------------------------------------------- meaning


class _Pair(NamedTuple):
    """One gpu x stack pair of the expansion and where the matrix asks for it."""

    gpu: str
    stack: str
    gpu_path: Path_
    stack_path: Path_
    include: int | None = None

    @property
    def path(self) -> Path_:
        return ("matrix", "include", self.include) if self.include is not None else self.stack_path

    @property
    def origin(self) -> str:
        if self.include is not None:
            return _dotted(self.path)
        return f"{_dotted(self.gpu_path)} x {_dotted(self.stack_path)}"


class _Report:
    """Collects problems; `group` merges problems that differ only in a list of names into one line."""

    def __init__(self, source: str, lines: _LineIndex) -> None:
        self.source, self.lines = source, lines
        self.problems: list[Problem] = []
        self._groups: dict[tuple[Path_, str, str], list[str]] = {}

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.source, self.lines.line_for(path), _dotted(path), _printable(message)))

    def group(self, path: Path_, before: str, name: str, after: str) -> None:
        names = self._groups.setdefault((path, before, after), [])
        if name not in names:
            names.append(name)

    def result(self) -> list[Problem]:
        for (path, before, after), names in self._groups.items():
            self.add(path, f"{before}{', '.join(names)}{after}")
        self._groups.clear()
        return sorted(self.problems, key=lambda problem: problem.line or 0)


def _check_names(matrix: Matrix, report: _Report) -> None:
    for section in ("targets", "stacks"):
        for name in getattr(matrix, section):
            if not re.fullmatch(NAME_PATTERN, name):
                report.add((section, name), f"expected a name of letters, digits, '.', '_' and '-' (got {name!r})")


def _check_targets(matrix: Matrix, report: _Report) -> None:
    for name, target in matrix.targets.items():
        where = ("targets", name)
        if target.kind == "cpu":
            if target.gfx is not None:
                report.add((*where, "gfx"), f"expected no gfx for a cpu target: it runs no GPU code (got {target.gfx!r})")
            continue
        gfx_choices = " or ".join(sorted(KNOWN_GFX))
        if target.gfx is None:
            report.add((*where, "gfx"), f"required field is missing for an AMD target: expected {gfx_choices}")
        elif target.gfx not in KNOWN_GFX:
            report.add((*where, "gfx"), f"expected {gfx_choices} for an AMD target (got {target.gfx!r})")
        elif KNOWN_GPU_GFX.get(name, target.gfx) != target.gfx:
            report.add((*where, "gfx"), f"expected {KNOWN_GPU_GFX[name]}, the architecture of an {name} (got {target.gfx!r})")
        if target.peak_bandwidth_tbs is None:
            message = "required field is missing for an AMD target: expected the HBM peak bandwidth in TB/s such as 5.3"
            report.add((*where, "peak_bandwidth_tbs"), message)
        devices = target.device_policy.devices
        if "/dev/kfd" not in devices or not any(d == "/dev/dri" or d.startswith("/dev/dri/") for d in devices):
            got = ", ".join(devices) or "none"
            report.add(
                (*where, "device_policy", "devices"),
                f"expected /dev/kfd and /dev/dri (or /dev/dri/renderD<N>) for an AMD target (got {got})",
            )


def _check_torch_pin(stack: Stack, where: Path_, report: _Report) -> None:
    """What the pin says of itself: a pre-release only when asked for, and a ROCm build label that fits the stack."""
    torch = stack.torch
    if torch.is_prerelease and not torch.pre:
        report.add(
            (*where, "torch", "version"),
            f"torch {torch.version} is a pre-release (nightly or release candidate): expected a release, "
            "or pre: true on the pin to ask for it",
        )
    built_for = torch.built_for_rocm
    if built_for is not None and stack.rocm is None:
        report.add((*where, "torch", "version"), f"torch {torch.version} is a ROCm {built_for} build: expected rocm on the stack")
    elif built_for is not None and stack.rocm is not None and built_for != ".".join(stack.rocm.split(".")[:2]):
        report.add(
            (*where, "torch", "version"),
            f"torch {torch.version} is built for ROCm {built_for}: expected a build for the stack's ROCm {stack.rocm}",
        )


def _check_pytorch_release_pairing(stack: Stack, rocm: str, where: Path_, report: _Report) -> bool:
    """pytorch.org's torch/ROCm table, for its release indexes only; False when the ROCm version is unknown there."""
    known_rocm = sorted({known for rocms in TORCH_ROCM_WHEELS.values() for known in rocms}, key=Version)
    if rocm not in known_rocm:
        report.add((*where, "rocm"), f"expected a ROCm version with torch wheels: {', '.join(known_rocm)} (got {stack.rocm!r})")
        return False
    torch_minors = [minor for minor, rocms in TORCH_ROCM_WHEELS.items() if rocm in rocms]
    offered = TORCH_ROCM_WHEELS.get(stack.torch.minor)
    if rocm not in (offered or ()):
        elsewhere = (
            f"torch {stack.torch.minor} wheels exist for ROCm {', '.join(offered)}"
            if offered
            else f"rocmci knows no ROCm wheels of torch {stack.torch.minor}"
        )
        report.add(
            (*where, "torch", "version"),
            f"torch {stack.torch.version} is not offered for ROCm {stack.rocm} ({elsewhere}): "
            f"expected torch {', '.join(m + '.x' for m in torch_minors)} for ROCm {rocm}",
        )
    expected_index = f"{PYTORCH_INDEX_HOST}rocm{rocm}"
    if stack.torch.index.rstrip("/") != expected_index:
        report.add((*where, "torch", "index"), f"expected {expected_index} for ROCm {stack.rocm} (got {stack.torch.index})")
    return True


def _check_stacks(matrix: Matrix, report: _Report) -> None:
    nightly_host = PYTORCH_INDEX_HOST + "nightly/"
    for name, stack in matrix.stacks.items():
        where = ("stacks", name)
        _check_torch_pin(stack, where, report)
        index = stack.torch.index.rstrip("/")
        if stack.rocm is None:
            if index.startswith((PYTORCH_INDEX_HOST + "rocm", nightly_host + "rocm")):
                report.add(
                    (*where, "torch", "index"), f"expected a non-ROCm index for a stack without rocm (got {index}), or set rocm"
                )
            continue
        rocm = ".".join(stack.rocm.split(".")[:2])
        if index.startswith(nightly_host):
            if index != f"{nightly_host}rocm{rocm}":
                report.add((*where, "torch", "index"), f"expected {nightly_host}rocm{rocm} for ROCm {stack.rocm} (got {index})")
        elif index.startswith(PYTORCH_INDEX_HOST) and not _check_pytorch_release_pairing(stack, rocm, where, report):
            continue
        base = stack.base_image
        base_rocm = re.match(r"([0-9]+\.[0-9]+)(?![0-9])", base.tag)
        if base.name.startswith("rocm/") and base_rocm and base_rocm.group(1) != rocm:
            report.add((*where, "base_image", "tag"), f"expected a ROCm {rocm} base image for ROCm {stack.rocm} (got {base.tag})")


def _check_references(matrix: Matrix, report: _Report) -> None:
    axes = matrix.matrix
    named: list[tuple[Path_, str, str | None]] = [(("matrix", "gpu", i), "gpu", name) for i, name in enumerate(axes.gpu)]
    named += [(("matrix", "stack", i), "stack", name) for i, name in enumerate(axes.stack)]
    for group, rules in (("include", axes.include), ("exclude", axes.exclude)):
        for i, rule in enumerate(rules):
            named += [(("matrix", group, i, axis), axis, getattr(rule, axis)) for axis in ("gpu", "stack")]
    for path, axis, name in named:
        known = list(matrix.targets if axis == "gpu" else matrix.stacks)
        if name is None or name in known:
            continue
        what = "GPU target" if axis == "gpu" else "stack"
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        report.add(path, f"unknown {what} {name!r}{hint}: expected one of {', '.join(known)}")


def _excluded(gpu: str, stack: str, rule: Exclude) -> bool:
    return (rule.gpu is None or rule.gpu == gpu) and (rule.stack is None or rule.stack == stack)


def _expanded_pairs(matrix: Matrix) -> list[_Pair]:
    """The product of the gpu and stack axes less the exclude rules, then the includes, in that order."""
    axes = matrix.matrix
    pairs = [
        _Pair(gpu, stack, ("matrix", "gpu", i), ("matrix", "stack", j))
        for i, gpu in enumerate(axes.gpu)
        for j, stack in enumerate(axes.stack)
        if not any(_excluded(gpu, stack, rule) for rule in axes.exclude)
    ]
    pairs += [
        _Pair(inc.gpu, inc.stack, ("matrix", "include", k, "gpu"), ("matrix", "include", k, "stack"), k)
        for k, inc in enumerate(axes.include)
    ]
    return pairs


def _check_pairs(matrix: Matrix, pairs: list[_Pair], report: _Report) -> None:
    for pair in pairs:
        target, stack = matrix.targets[pair.gpu], matrix.stacks[pair.stack]
        if target.kind == "cpu" and stack.rocm is not None:
            report.group(
                pair.gpu_path if pair.include is None else pair.path,
                f"the cpu target {pair.gpu!r} is paired with ROCm stack(s) ",
                pair.stack,
                ": expected stacks without rocm for a cpu target (drop the pairs, or add exclude rules)",
            )
        elif target.kind == "amd" and stack.rocm is None:
            report.group(
                pair.path,
                f"stack {pair.stack!r} has no rocm, so it cannot run on AMD GPU target(s) ",
                pair.gpu,
                ": expected a ROCm stack for them (drop the pairs, or add exclude rules)",
            )
        if target.kind == "amd" and stack.fixture:
            report.group(
                pair.path,
                f"stack {pair.stack!r} is a test fixture (its aiter is a test double) and is paired with AMD GPU target(s) ",
                pair.gpu,
                ": expected fixture stacks on cpu targets only",
            )
        minimum = AITER_MIN_FOR_GFX.get(target.gfx or "")
        version = stack.aiter.version
        if target.kind == "amd" and minimum and version is not None and version < minimum:
            report.group(
                ("stacks", pair.stack, "aiter", *stack.aiter.pin_path),
                f"aiter {stack.aiter.label} predates {target.gfx} support (paired with GPU target(s) ",
                pair.gpu,
                f"): expected aiter >= {minimum} for {target.gfx}, or exclude the pairs",
            )


def _check_ids(matrix: Matrix, pairs: list[_Pair], report: _Report) -> None:
    """Entry ids name images, reports and CI jobs: each must be unique and fit in a docker tag."""
    first: dict[str, _Pair] = {}
    for pair in pairs:
        eid = entry_id(pair.gpu, matrix.stacks[pair.stack])
        bid = build_id(matrix.targets[pair.gpu], matrix.stacks[pair.stack])
        for what, name in (("entry id", eid), ("build id", bid)):
            if len(name) > MAX_ID_LENGTH:
                report.add(
                    pair.path, f"{what} {name!r} has {len(name)} characters: expected at most {MAX_ID_LENGTH} to fit a docker tag"
                )
        seen = first.setdefault(eid, pair)
        if seen is pair:
            continue
        line = report.lines.line_for(seen.path)
        if (seen.gpu, seen.stack) == (pair.gpu, pair.stack):
            message = f"{pair.gpu} x {pair.stack} is already in the matrix ({seen.origin}, line {line}): expected each pair once"
            report.add(pair.path, f"duplicate entry id {eid!r}: {message}")
        else:
            report.group(
                pair.path,
                f"stacks {pair.stack!r} and {seen.stack!r} ({_dotted(seen.path)}, line {line}) pin the same rocm, torch and aiter, "
                "so they give the same entry id(s) ",
                eid,
                ": expected unique entry ids (change a pin, or drop one of the stacks)",
            )


def _check_validated_tags(matrix: Matrix, pairs: list[_Pair], report: _Report) -> None:
    """`<gpu>-<stack>-validated` (and each GPU's `<gpu>-validated`) must fit a tag and name one pair (one GPU)."""
    owners: dict[str, str] = {}
    named = [(validated_tag_for(gpu, None), gpu, ("matrix",)) for gpu in dict.fromkeys(pair.gpu for pair in pairs)]
    named += [(validated_tag_for(pair.gpu, pair.stack), f"{pair.gpu} x {pair.stack}", pair.path) for pair in pairs]
    for tag, owner, path in named:
        if len(tag) > MAX_TAG_LENGTH:
            report.add(
                path, f"validated tag {tag!r} has {len(tag)} characters: expected at most {MAX_TAG_LENGTH} (shorten the names)"
            )
        seen = owners.setdefault(tag, owner)
        if seen != owner:
            report.add(
                path, f"validated tag {tag!r} would name both {seen} and {owner}: expected one tag per GPU x stack (rename one)"
            )


def _semantic_problems(matrix: Matrix, lines: _LineIndex, source: str) -> list[Problem]:
    report = _Report(source, lines)
    for check in (_check_names, _check_targets, _check_stacks, _check_references):
        check(matrix, report)
    if report.problems:
        return report.result()
    pairs = _expanded_pairs(matrix)
    if not pairs:
        axes = matrix.matrix
        report.add(
            ("matrix",),
            f"expected at least one entry (got none: {len(axes.gpu)} GPU target(s) x {len(axes.stack)} stack(s), "
            f"{len(axes.exclude)} exclude rule(s), {len(axes.include)} include(s))",
        )
    _check_pairs(matrix, pairs, report)
    _check_ids(matrix, pairs, report)
    _check_validated_tags(matrix, pairs, report)
    return report.result()


# ---------------------------------------------------------------- tags and build args


@dataclass(frozen=True)
class BuildContext:
    """Digest of the files every image is built from (images/ and checks/): names, contents and executable bits."""

    root: Path

    @cached_property
    def digest(self) -> str:
        hasher = hashlib.sha256()
        for path in self._files():
            executable = b"x" if path.stat().st_mode & 0o111 else b"-"
            hasher.update(path.relative_to(self.root).as_posix().encode() + b"\0" + executable)
            hasher.update(hashlib.sha256(path.read_bytes()).digest())
        return hasher.hexdigest()

    def _files(self) -> Iterator[Path]:
        for directory in CONTEXT_DIRS:
            for path in sorted((self.root / directory).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    yield path


def entry_id(gpu: str, stack: Stack) -> str:
    platform = f"rocm{stack.rocm}" if stack.rocm else "cpu"
    raw = f"{gpu}-{platform}-torch{stack.torch.version}-aiter{stack.aiter.label}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def build_id(target: Target, stack: Stack) -> str:
    """What an image is built for: the stack's pins and the gfx (`cpu` for every cpu target), never the GPU model."""
    platform = f"{target.gfx}-rocm{stack.rocm}" if target.gfx else "cpu"
    raw = f"{platform}-torch{stack.torch.version}-aiter{stack.aiter.label}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def validated_tag_for(gpu: str, stack: str | None = None) -> str:
    """`<gpu>-<stack>-validated`: one GPU model and one stack; `<gpu>-validated` (stack None): the newest of any stack."""
    return f"{gpu}-{stack}-validated" if stack else f"{gpu}-validated"


def build_args_for(target: Target, stack: Stack) -> dict[str, str]:
    """Only what goes into the image: the GPU model is not in it, so entries of one stack and gfx share a build."""
    return {
        "BASE_IMAGE": stack.base_image.ref,
        "ROCM_VERSION": stack.rocm or "",
        "PYTHON_VERSION": stack.python,
        "TORCH_VERSION": stack.torch.version,
        "TORCH_INDEX_URL": stack.torch.index,
        "AITER_SOURCE": stack.aiter.kind,
        "AITER_SPEC": stack.aiter.spec,
        "AITER_VERSION": stack.aiter.label,
        "AITER_COMMIT": (stack.aiter.git and stack.aiter.git.commit) or "",
        "AITER_USE_SYSTEM_TRITON": "1" if stack.triton == "torch" else "0",
        "TRITON_SOURCE": "torch" if stack.triton == "torch" else "aiter",
        "TRITON_VERSION": "" if isinstance(stack.triton, str) else stack.triton.aiter,
        "GPU_ARCHS": target.gfx or "",
        "PREBUILD_KERNELS": "1" if stack.aiter.prebuilt_kernels else "0",
        "ROCMCI_TARGET": target.gfx or "cpu",
        "ROCMCI_FIXTURE": "1" if stack.fixture else "0",
        # Only when set, so that the tags of pins on pip's configured index stay as they were.
        **({"AITER_INDEX_URL": stack.aiter.index} if stack.aiter.index else {}),
    }


def content_hash(build_args: dict[str, str], context_digest: str) -> str:
    payload = json.dumps({"scheme": HASH_SCHEME, "args": build_args, "context": context_digest}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


# Image label -> Entry.summary() field: validate records these labels and the report checks them against the entry.
# An image is a shared build: its labels name the build, never an entry or GPU model.
PIN_LABELS = {
    BUILD_LABEL: "build",
    CONTENT_HASH_LABEL: "content_hash",
    TORCH_LABEL: "torch",
    AITER_LABEL: "aiter",
    GFX_LABEL: "gfx",
}


def labels_for(build: str, target: Target, stack: Stack, digest: str) -> dict[str, str]:
    """Labels that follow from the pins alone, the same for every entry sharing the build (no GPU model in them);
    build time labels (created, revision) are added by build.py. `ENTRY_LABEL` names the build on an image
    (clean groups images by it); a validation container's `ENTRY_LABEL` names its entry."""
    return {
        "org.opencontainers.image.title": f"rocmci {build}",
        "org.opencontainers.image.description": (
            f"{target.gfx or 'cpu only'}: ROCm {stack.rocm or 'none'}, torch {stack.torch.version}, "
            f"aiter {stack.aiter.label} ({stack.aiter.kind})"
        ),
        "org.opencontainers.image.version": f"{build}-{digest[:12]}",
        "org.opencontainers.image.base.name": f"{stack.base_image.name}:{stack.base_image.tag}",
        "org.opencontainers.image.base.digest": stack.base_image.digest or "",
        MANAGED_LABEL: "true",
        ROLE_LABEL: "entry",  # not inherited from the base image's "base"
        ENTRY_LABEL: build,
        BUILD_LABEL: build,
        GFX_LABEL: target.gfx or "",
        ROCM_LABEL: stack.rocm or "",
        PYTHON_LABEL: stack.python,
        TORCH_LABEL: stack.torch.version,
        TORCH_INDEX_LABEL: stack.torch.index,
        AITER_LABEL: stack.aiter.label,
        AITER_SOURCE_LABEL: stack.aiter.spec,
        AITER_KERNELS_LABEL: "prebuilt" if stack.aiter.prebuilt_kernels else "jit-at-first-call",
        CONTENT_HASH_LABEL: digest,
        FIXTURE_LABEL: "true" if stack.fixture else "false",
    }


def _entry(matrix: Matrix, pair: _Pair, context_digest: str) -> Entry:
    return _entry_of(matrix, pair.gpu, pair.stack, matrix.stacks[pair.stack], context_digest)


def _entry_of(matrix: Matrix, gpu: str, stack_name: str, stack: Stack, context_digest: str) -> Entry:
    target = matrix.targets[gpu]
    eid, build = entry_id(gpu, stack), build_id(target, stack)
    args = build_args_for(target, stack)
    digest = content_hash(args, context_digest)
    return Entry(
        id=eid,
        gpu=gpu,
        stack_name=stack_name,
        target=target,
        stack=stack,
        gates=target.gates or matrix.gates,
        content_hash=digest,
        build_args=args,
        labels=labels_for(build, target, stack, digest),
        build_id=build,
    )


def variant_entry(entry: Entry, *, aiter: str | None = None, torch: str | None = None, context_root: Path = ROOT) -> Entry:
    """A one-off entry: `entry` with another aiter pin (a PyPI version or a git release tag) and/or torch version,
    tagged like any planned entry, so that its image reuses every layer below the changed pin."""
    stack = entry.stack
    if aiter is not None:
        pin = {"git": stack.aiter.git.model_copy(update={"ref": aiter})} if stack.aiter.git else {"pypi": aiter}
        stack = stack.model_copy(update={"aiter": stack.aiter.model_copy(update=pin)})
    if torch is not None:
        stack = stack.model_copy(update={"torch": stack.torch.model_copy(update={"version": torch})})
    matrix = Matrix.model_construct(targets={entry.gpu: entry.target}, gates=entry.gates)
    return _entry_of(matrix, entry.gpu, entry.stack_name, stack, BuildContext(context_root).digest)


# ---------------------------------------------------------------- public API


def parse_matrix(text: str, source: str = "matrix.yaml") -> tuple[Matrix, _LineIndex]:
    """Parse and validate matrix.yaml's text; raises MatrixError listing every problem of the first pass that fails."""
    data, lines = _parse_yaml(text, source)
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        raise MatrixError(sorted(_schema_problems(exc, lines, source), key=lambda p: p.line or 0)) from None
    problems = _semantic_problems(matrix, lines, source)
    if problems:
        raise MatrixError(problems)
    return matrix, lines


def expand(matrix: Matrix, lines: _LineIndex, source: str, context: BuildContext) -> tuple[Entry, ...]:
    """The matrix's entries in order (axes product less excludes, then includes), each with its tag."""
    pairs = _expanded_pairs(matrix)
    report = _Report(source, lines)
    _check_ids(matrix, pairs, report)
    problems = report.result()
    if problems:
        raise MatrixError(problems)
    digest = context.digest
    return tuple(_entry(matrix, pair, digest) for pair in pairs)


def _read_text(source: Path) -> str:
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


def load_plan(path: str | Path | None = None, context_root: Path = ROOT) -> Plan:
    source = Path(path) if path else DEFAULT_MATRIX
    matrix, lines = parse_matrix(_read_text(source), str(source))
    return Plan(source=source, matrix=matrix, entries=expand(matrix, lines, str(source), BuildContext(context_root)))


def load_matrix(path: str | Path | None = None) -> Matrix:
    return load_plan(path).matrix


def github_matrix(entries: Iterable[Entry]) -> dict[str, list[dict[str, Any]]]:
    """The object GitHub Actions' `strategy.matrix: ${{ fromJSON(...) }}` takes."""
    return {"include": [entry.summary() for entry in entries]}


def github_build_matrix(entries: Iterable[Entry]) -> dict[str, list[dict[str, Any]]]:
    """One item per shared build (the build job's matrix): its first entry's fields plus the ids and GPU models
    of every entry that validates the image."""
    return {
        "include": [
            group[0].summary() | {"entries": [e.id for e in group], "gpus": [e.gpu for e in group]}
            for group in shared_builds(entries).values()
        ]
    }


def shared_builds(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Entries grouped by the image they share (its content-hashed tag), in plan order."""
    shared: dict[str, list[Entry]] = {}
    for entry in entries:
        shared.setdefault(entry.tag, []).append(entry)
    return shared


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
