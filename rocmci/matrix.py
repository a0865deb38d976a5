"""matrix.yaml: schema, validation with file:line errors, expansion into entries with deterministic tags."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rocmci.errors import MatrixError, Problem

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MATRIX = ROOT / "matrix.yaml"
HASH_SCHEME = "rocmci-tag/v1"
# Files that go into every image: any change to them gives every entry a new tag.
CONTEXT_DIRS = ("images", "checks")

KNOWN_GFX = {"gfx942", "gfx950"}
# torch minor release -> ROCm versions its wheels are published for on download.pytorch.org (test-infra history).
TORCH_ROCM_WHEELS: dict[str, tuple[str, ...]] = {
    "2.8": ("6.3", "6.4"),
    "2.9": ("6.4",),
    "2.10": ("7.0", "7.1"),
    "2.11": ("7.1", "7.2"),
    "2.12": ("7.1", "7.2"),
    "2.13": ("7.1", "7.2"),
    "2.14": ("7.2",),
}
# First aiter release whose kernels accept each gfx.
AITER_MIN_FOR_GFX = {"gfx942": Version("0.1.0"), "gfx950": Version("0.1.3")}
PYTORCH_INDEX_HOST = "https://download.pytorch.org/whl/"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DevicePolicy(_Model):
    devices: list[str] = Field(default_factory=list)
    group_add: list[str] = Field(default_factory=list)
    shm_size: str = "2g"
    network: Literal["none", "host", "bridge"] = "none"
    extra_run_args: list[str] = Field(default_factory=list)

    @field_validator("devices")
    @classmethod
    def _device_paths(cls, devices: list[str]) -> list[str]:
        for device in devices:
            if not device.startswith("/dev/"):
                raise ValueError(f"expected a path under /dev/ (got {device!r})")
        return devices

    @field_validator("shm_size")
    @classmethod
    def _shm(cls, shm: str) -> str:
        if not re.fullmatch(r"[0-9]+[bkmg]?", shm):
            raise ValueError(f"expected a size such as 16g or 512m (got {shm!r})")
        return shm


class Gates(_Model):
    k_norm_max_kernels: int = Field(default=1, ge=1)
    k_norm_min_speedup: float = Field(default=2.0, gt=0)


class Target(_Model):
    kind: Literal["amd", "cpu"] = "amd"
    gfx: str | None = None
    hbm_gb: int | None = Field(default=None, gt=0)
    peak_bandwidth_tbs: float | None = Field(default=None, gt=0)
    compute_units: int | None = Field(default=None, gt=0)
    runs_on: list[str] = Field(min_length=1)
    device_policy: DevicePolicy = Field(default_factory=DevicePolicy)
    gates: Gates | None = None

    @model_validator(mode="after")
    def _amd_needs_gpu_facts(self) -> Target:
        if self.kind == "amd":
            if self.gfx not in KNOWN_GFX:
                raise ValueError(f"gfx: expected one of {', '.join(sorted(KNOWN_GFX))} for an AMD target (got {self.gfx!r})")
            if self.peak_bandwidth_tbs is None:
                raise ValueError("peak_bandwidth_tbs: required for an AMD target (HBM peak, TB/s)")
            if "/dev/kfd" not in self.device_policy.devices:
                raise ValueError("device_policy.devices: an AMD target needs /dev/kfd")
        elif self.gfx is not None:
            raise ValueError("gfx: a cpu target has no gfx")
        return self


class BaseImage(_Model):
    name: str = Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9._-]+)*$")
    tag: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    local: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


class TorchPin(_Model):
    version: str
    index: str = Field(pattern=r"^(https?|file)://")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> str:
        text = str(value) if isinstance(value, (int, float)) else value
        if not isinstance(text, str) or not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", text):
            raise ValueError(f"expected a full release version such as 2.13.0 (got {value!r})")
        return text

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


class GitSource(_Model):
    repo: str = Field(pattern=r"^(https://|git@|file://)")
    ref: str = Field(min_length=1)


class AiterSource(_Model):
    pypi: str | None = None
    git: GitSource | None = None
    wheel: str | None = Field(default=None, pattern=r"^(https?|file)://.+\.whl$")

    @field_validator("pypi", mode="before")
    @classmethod
    def _pypi(cls, value: Any) -> Any:
        return str(value) if isinstance(value, float) else value

    @model_validator(mode="after")
    def _exactly_one(self) -> AiterSource:
        given = [name for name in ("pypi", "git", "wheel") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of pypi, git, wheel (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return "pypi" if self.pypi else "git" if self.git else "wheel"

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
    rocm: str | None = Field(default=None, pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")
    python: str = Field(pattern=r"^3\.[0-9]+$")
    torch: TorchPin
    aiter: AiterSource
    fixture: bool = False

    @field_validator("rocm", "python", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, float) else value


class Include(_Model):
    gpu: str
    stack: str


class Exclude(_Model):
    gpu: str | None = None
    stack: str | None = None


class Axes(_Model):
    gpu: list[str] = Field(default_factory=list)
    stack: list[str] = Field(default_factory=list)
    include: list[Include] = Field(default_factory=list)
    exclude: list[Exclude] = Field(default_factory=list)


class Matrix(_Model):
    version: Literal[1]
    repository: str = "127.0.0.1:5000/rocmci"
    targets: dict[str, Target] = Field(min_length=1)
    stacks: dict[str, Stack] = Field(min_length=1)
    matrix: Axes
    gates: Gates = Field(default_factory=Gates)


@dataclass(frozen=True)
class Entry:
    """One image to build and validate: a GPU target crossed with a stack, with its deterministic tag."""

    id: str
    gpu: str
    stack_name: str
    target: Target
    stack: Stack
    gates: Gates
    content_hash: str
    build_args: dict[str, str] = field(hash=False)
    labels: dict[str, str] = field(hash=False)

    @property
    def tag(self) -> str:
        return f"{self.id}-{self.content_hash[:12]}"

    @property
    def gfx(self) -> str | None:
        return self.target.gfx

    @property
    def is_amd(self) -> bool:
        return self.target.kind == "amd"

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
            "tag": self.tag,
            "content_hash": self.content_hash,
            "runs_on": list(self.target.runs_on),
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


class _LineIndex:
    """Maps a field path (tuple of keys and indexes) to the 1-based line it starts on in the YAML file."""

    def __init__(self) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        self.duplicates: list[tuple[tuple[Any, ...], int]] = []

    def walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key == "<<":
                    continue
                if key in seen:
                    self.duplicates.append(((*path, key), key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line_for(self, path: tuple[Any, ...]) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _parse_yaml(text: str, source: str) -> tuple[Any, _LineIndex]:
    index = _LineIndex()
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise MatrixError(
                    [Problem(source, 1, "", "the file is empty: expected a mapping with version, targets, stacks, matrix")]
                )
            index.walk(node, ())
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MatrixError([Problem(source, line, "", f"malformed YAML: {problem}")]) from None
    if index.duplicates:
        raise MatrixError([Problem(source, line, _dotted(path), "duplicate key") for path, line in index.duplicates])
    if not isinstance(data, dict):
        raise MatrixError([Problem(source, 1, "", f"expected a mapping at the top level (got {type(data).__name__})")])
    return data, index


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe_pydantic_error(error: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    if kind.endswith("_type") or kind in {"literal_error", "string_pattern_mismatch", "too_short", "greater_than"}:
        message = f"{message} (got {got!r})" if not isinstance(got, (dict, list)) else f"{message} (got a {type(got).__name__})"
    if kind == "model_type":
        message = f"expected a mapping (got {type(got).__name__})"
    return loc, message


# ---------------------------------------------------------------- semantic checks


def _semantic_problems(matrix: Matrix, lines: _LineIndex, source: str) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: tuple[Any, ...], message: str) -> None:
        problems.append(Problem(source, lines.line_for(path), _dotted(path), message))

    for name, stack in matrix.stacks.items():
        where = ("stacks", name)
        if stack.rocm is not None:
            offered = TORCH_ROCM_WHEELS.get(stack.torch.minor)
            rocm_minor = ".".join(stack.rocm.split(".")[:2])
            if offered is None or rocm_minor not in offered:
                rocms = f"ROCm {', '.join(offered)}" if offered else "no ROCm version"
                add(
                    (*where, "torch", "version"),
                    f"torch {stack.torch.version} is not offered for ROCm {stack.rocm} (it is offered for {rocms})",
                )
            expected_index = f"{PYTORCH_INDEX_HOST}rocm{rocm_minor}"
            if stack.torch.index.startswith(PYTORCH_INDEX_HOST) and stack.torch.index.rstrip("/") != expected_index:
                add((*where, "torch", "index"), f"expected {expected_index} for ROCm {stack.rocm} (got {stack.torch.index})")
        elif stack.torch.index.startswith(PYTORCH_INDEX_HOST) and "/rocm" in stack.torch.index:
            add((*where, "torch", "index"), "a ROCm wheel index needs the stack's rocm version set")
        if stack.aiter.pypi is not None and stack.aiter.version is None:
            add((*where, "aiter", "pypi"), f"expected a PEP 440 version of amd-aiter (got {stack.aiter.pypi!r})")

    axes = matrix.matrix
    known_targets, known_stacks = set(matrix.targets), set(matrix.stacks)

    def check_name(path: tuple[Any, ...], axis: str, value: str | None) -> None:
        known = known_targets if axis == "gpu" else known_stacks
        if value is not None and value not in known:
            what = "GPU target" if axis == "gpu" else "stack"
            add(path, f"unknown {what} {value!r} (known: {', '.join(sorted(known))})")

    for axis in ("gpu", "stack"):
        for i, name in enumerate(getattr(axes, axis)):
            check_name(("matrix", axis, i), axis, name)
    for group, rules in (("exclude", axes.exclude), ("include", axes.include)):
        for i, rule in enumerate(rules):
            if rule.gpu is None and rule.stack is None:
                add(("matrix", group, i), f"an {group} rule needs gpu, stack or both")
            for axis in ("gpu", "stack"):
                check_name(("matrix", group, i, axis), axis, getattr(rule, axis))
    if problems:
        return problems

    pairs = _expanded_pairs(matrix)
    for gpu, stack_name, where in pairs:
        target, stack = matrix.targets[gpu], matrix.stacks[stack_name]
        if target.kind == "amd" and stack.rocm is None:
            add(where, f"stack {stack_name!r} has no rocm version but GPU target {gpu!r} is an AMD GPU")
        if target.kind == "cpu" and stack.rocm is not None:
            add(where, f"stack {stack_name!r} is a ROCm stack; the cpu target {gpu!r} needs a stack without rocm")
        if stack.fixture and target.kind == "amd":
            add(
                where,
                f"stack {stack_name!r} is a test fixture (its aiter is a test double) and can never carry an AMD target ({gpu!r})",
            )
        if target.gfx and stack.aiter.version is not None and stack.aiter.version < AITER_MIN_FOR_GFX[target.gfx]:
            add(
                where,
                f"aiter {stack.aiter.label} predates {target.gfx} support (needs aiter >= {AITER_MIN_FOR_GFX[target.gfx]}) for GPU target {gpu!r}",
            )
    if not pairs:
        add(("matrix",), "the matrix expands to no entries")
    return problems


def _excluded(gpu: str, stack: str, rule: Exclude) -> bool:
    return (rule.gpu is None or rule.gpu == gpu) and (rule.stack is None or rule.stack == stack)


def _expanded_pairs(matrix: Matrix) -> list[tuple[str, str, tuple[Any, ...]]]:
    axes = matrix.matrix
    pairs = [
        (gpu, stack, ("matrix", "stack", j))
        for gpu in axes.gpu
        for j, stack in enumerate(axes.stack)
        if not any(_excluded(gpu, stack, rule) for rule in axes.exclude)
    ]
    pairs += [(inc.gpu, inc.stack, ("matrix", "include", i)) for i, inc in enumerate(axes.include)]
    return pairs


# ---------------------------------------------------------------- tags and build args


@dataclass(frozen=True)
class BuildContext:
    """Digest of the files every image is built from (images/ and checks/)."""

    root: Path

    @cached_property
    def digest(self) -> str:
        hasher = hashlib.sha256()
        for directory in CONTEXT_DIRS:
            for path in sorted((self.root / directory).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    hasher.update(path.relative_to(self.root).as_posix().encode() + b"\0")
                    hasher.update(hashlib.sha256(path.read_bytes()).digest())
        return hasher.hexdigest()


def entry_id(gpu: str, stack: Stack) -> str:
    platform = f"rocm{stack.rocm}" if stack.rocm else "cpu"
    raw = f"{gpu}-{platform}-torch{stack.torch.version}-aiter{stack.aiter.label}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def build_args_for(gpu: str, target: Target, stack: Stack) -> dict[str, str]:
    return {
        "BASE_IMAGE": stack.base_image.ref,
        "ROCM_VERSION": stack.rocm or "",
        "PYTHON_VERSION": stack.python,
        "TORCH_VERSION": stack.torch.version,
        "TORCH_INDEX_URL": stack.torch.index,
        "AITER_SOURCE": stack.aiter.kind,
        "AITER_SPEC": stack.aiter.spec,
        "AITER_VERSION": stack.aiter.label,
        "GPU_ARCHS": target.gfx or "",
        "PREBUILD_KERNELS": "1" if stack.aiter.prebuilt_kernels else "0",
        "ROCMCI_TARGET": gpu,
        "ROCMCI_FIXTURE": "1" if stack.fixture else "0",
    }


def content_hash(build_args: dict[str, str], context_digest: str) -> str:
    payload = json.dumps({"scheme": HASH_SCHEME, "args": build_args, "context": context_digest}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def labels_for(entry_id_: str, gpu: str, target: Target, stack: Stack, digest: str) -> dict[str, str]:
    """Labels that follow from the pins alone; build time labels (created, revision) are added by build.py."""
    return {
        "org.opencontainers.image.title": f"rocmci {entry_id_}",
        "org.opencontainers.image.description": (
            f"{gpu} ({target.gfx or 'cpu only'}): ROCm {stack.rocm or 'none'}, torch {stack.torch.version}, "
            f"aiter {stack.aiter.label} ({stack.aiter.kind})"
        ),
        "org.opencontainers.image.version": f"{entry_id_}-{digest[:12]}",
        "org.opencontainers.image.base.name": f"{stack.base_image.name}:{stack.base_image.tag}",
        "org.opencontainers.image.base.digest": stack.base_image.digest or "",
        "io.rocmci.managed": "true",
        "io.rocmci.entry": entry_id_,
        "io.rocmci.gpu": gpu,
        "io.rocmci.gfx": target.gfx or "",
        "io.rocmci.rocm": stack.rocm or "",
        "io.rocmci.python": stack.python,
        "io.rocmci.torch": stack.torch.version,
        "io.rocmci.torch-index": stack.torch.index,
        "io.rocmci.aiter": stack.aiter.label,
        "io.rocmci.aiter-source": stack.aiter.spec,
        "io.rocmci.aiter-kernels": "prebuilt" if stack.aiter.prebuilt_kernels else "jit-at-first-call",
        "io.rocmci.content-hash": digest,
        "io.rocmci.fixture": "true" if stack.fixture else "false",
    }


# ---------------------------------------------------------------- public API


def parse_matrix(text: str, source: str = "matrix.yaml") -> tuple[Matrix, _LineIndex]:
    data, lines = _parse_yaml(text, source)
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _describe_pydantic_error(error)
            problems.append(Problem(source, lines.line_for(loc), _dotted(loc), message))
        raise MatrixError(problems) from None
    problems = _semantic_problems(matrix, lines, source)
    if problems:
        raise MatrixError(problems)
    return matrix, lines


def expand(matrix: Matrix, lines: _LineIndex, source: str, context: BuildContext) -> tuple[Entry, ...]:
    entries: list[Entry] = []
    first_seen: dict[str, tuple[Any, ...]] = {}
    problems: list[Problem] = []
    for gpu, stack_name, where in _expanded_pairs(matrix):
        target, stack = matrix.targets[gpu], matrix.stacks[stack_name]
        eid = entry_id(gpu, stack)
        if eid in first_seen:
            problems.append(
                Problem(
                    source,
                    lines.line_for(where),
                    _dotted(where),
                    f"duplicate entry id {eid!r} (also from {_dotted(first_seen[eid])} on line {lines.line_for(first_seen[eid])})",
                )
            )
            continue
        first_seen[eid] = where
        args = build_args_for(gpu, target, stack)
        digest = content_hash(args, context.digest)
        entries.append(
            Entry(
                id=eid,
                gpu=gpu,
                stack_name=stack_name,
                target=target,
                stack=stack,
                gates=target.gates or matrix.gates,
                content_hash=digest,
                build_args=args,
                labels=labels_for(eid, gpu, target, stack, digest),
            )
        )
    if problems:
        raise MatrixError(problems)
    return tuple(entries)


def load_plan(path: str | Path | None = None, context_root: Path = ROOT) -> Plan:
    source = Path(path) if path else DEFAULT_MATRIX
    try:
        text = source.read_text()
    except OSError as exc:
        raise MatrixError([Problem(str(source), None, "", f"cannot read the matrix file: {exc.strerror}")]) from None
    matrix, lines = parse_matrix(text, str(source))
    return Plan(source=source, matrix=matrix, entries=expand(matrix, lines, str(source), BuildContext(context_root)))


def load_matrix(path: str | Path | None = None) -> Matrix:
    return load_plan(path).matrix


def github_matrix(entries: list[Entry]) -> dict[str, list[dict[str, Any]]]:
    """The object GitHub Actions' `strategy.matrix: ${{ fromJSON(...) }}` takes."""
    return {"include": [entry.summary() for entry in entries]}
