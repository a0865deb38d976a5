"""matrix.yaml's schema: strict pydantic models whose field descriptions say, in words, what a value must be.

Every string type carries its own pattern and description, so a schema error reads `expected <description> (got ...)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from rocmci.plan.text import got

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
IMAGE_NAME_PATTERN = r"[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9._-]+)*"


def _text(pattern: str, expected: str, extra: Callable[[str], bool] | None = None) -> Any:
    """A string type that must match `pattern` (and `extra`); its error says what was expected and what was got."""
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value) or (extra is not None and not extra(value)):
            raise ValueError(f"expected {expected} (got {got(value)})")
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
        raise ValueError(f"expected the schema version 1 (got {got(value)})")
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
RunnerLabel = _text(r"[A-Za-z0-9_.:/-]+", "a runner label such as self-hosted or ubuntu-latest")
RunnerLabels = Annotated[
    list[RunnerLabel], Field(min_length=1, description="a list of runner labels such as [self-hosted, linux, x64]")
]
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
    builder: RunnerLabels | None = Field(
        default=None, description="a list of runner labels this stack builds on, such as [self-hosted, linux, x64, rocm-builder]"
    )
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


class Builders(_Model):
    """Where images are built: cpu stacks on `default`, ROCm stacks on `rocm` (default: the `default` labels)."""

    default: RunnerLabels = Field(default_factory=lambda: ["ubuntu-latest"])
    rocm: RunnerLabels | None = None

    def for_stack(self, stack: Stack) -> list[str]:
        """A stack's own `builder:` first, then the builder of its kind."""
        if stack.builder is not None:
            return list(stack.builder)
        return list(self.rocm if stack.rocm is not None and self.rocm is not None else self.default)


class Matrix(_Model):
    version: SchemaVersion
    # The release repository: validated tags and reports. Content-hashed builds land in `staging` first.
    repository: Repository = "127.0.0.1:5000/rocmci"
    staging: Repository | None = None
    builders: Builders = Field(default_factory=Builders)
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
