"""What matrix.yaml must mean, beyond its schema: names, targets and their gfx, torch wheels per ROCm, aiter per gfx,
target x stack pairing, unknown names, unique entry ids and validated tags. The domain facts come from data files
(rocmci/resources/gpus.yaml, torch-rocm.yaml)."""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

from packaging.version import Version

from rocmci import resources
from rocmci.errors import Problem
from rocmci.plan.schema import NAME_PATTERN, Exclude, Matrix, Stack
from rocmci.plan.tags import MAX_ID_LENGTH, MAX_TAG_LENGTH, build_id, entry_id, validated_tag_for
from rocmci.plan.text import FieldPath, dotted, printable
from rocmci.plan.yamlfile import LineIndex

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


class Pair(NamedTuple):
    """One gpu x stack pair of the expansion and where the matrix asks for it."""

    gpu: str
    stack: str
    gpu_path: FieldPath
    stack_path: FieldPath
    include: int | None = None

    @property
    def path(self) -> FieldPath:
        return ("matrix", "include", self.include) if self.include is not None else self.stack_path

    @property
    def origin(self) -> str:
        if self.include is not None:
            return dotted(self.path)
        return f"{dotted(self.gpu_path)} x {dotted(self.stack_path)}"


class Report:
    """Collects problems; `group` merges problems that differ only in a list of names into one line."""

    def __init__(self, source: str, lines: LineIndex) -> None:
        self.source, self.lines = source, lines
        self.problems: list[Problem] = []
        self._groups: dict[tuple[FieldPath, str, str], list[str]] = {}

    def add(self, path: FieldPath, message: str) -> None:
        self.problems.append(Problem(self.source, self.lines.line_for(path), dotted(path), printable(message)))

    def group(self, path: FieldPath, before: str, name: str, after: str) -> None:
        names = self._groups.setdefault((path, before, after), [])
        if name not in names:
            names.append(name)

    def result(self) -> list[Problem]:
        for (path, before, after), names in self._groups.items():
            self.add(path, f"{before}{', '.join(names)}{after}")
        self._groups.clear()
        return sorted(self.problems, key=lambda problem: problem.line or 0)


def _check_names(matrix: Matrix, report: Report) -> None:
    for section in ("targets", "stacks"):
        for name in getattr(matrix, section):
            if not re.fullmatch(NAME_PATTERN, name):
                report.add((section, name), f"expected a name of letters, digits, '.', '_' and '-' (got {name!r})")


def _check_targets(matrix: Matrix, report: Report) -> None:
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


def _check_torch_pin(stack: Stack, where: FieldPath, report: Report) -> None:
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


def _check_pytorch_release_pairing(stack: Stack, rocm: str, where: FieldPath, report: Report) -> bool:
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


def _check_stacks(matrix: Matrix, report: Report) -> None:
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


def _check_references(matrix: Matrix, report: Report) -> None:
    axes = matrix.matrix
    named: list[tuple[FieldPath, str, str | None]] = [(("matrix", "gpu", i), "gpu", name) for i, name in enumerate(axes.gpu)]
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


def expanded_pairs(matrix: Matrix) -> list[Pair]:
    """The product of the gpu and stack axes less the exclude rules, then the includes, in that order."""
    axes = matrix.matrix
    pairs = [
        Pair(gpu, stack, ("matrix", "gpu", i), ("matrix", "stack", j))
        for i, gpu in enumerate(axes.gpu)
        for j, stack in enumerate(axes.stack)
        if not any(_excluded(gpu, stack, rule) for rule in axes.exclude)
    ]
    pairs += [
        Pair(inc.gpu, inc.stack, ("matrix", "include", k, "gpu"), ("matrix", "include", k, "stack"), k)
        for k, inc in enumerate(axes.include)
    ]
    return pairs


def _check_pairs(matrix: Matrix, pairs: list[Pair], report: Report) -> None:
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


def check_ids(matrix: Matrix, pairs: list[Pair], report: Report) -> None:
    """Entry ids name images, reports and CI jobs: each must be unique and fit in a docker tag."""
    first: dict[str, Pair] = {}
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
                f"stacks {pair.stack!r} and {seen.stack!r} ({dotted(seen.path)}, line {line}) pin the same rocm, torch and aiter, "
                "so they give the same entry id(s) ",
                eid,
                ": expected unique entry ids (change a pin, or drop one of the stacks)",
            )


def _check_validated_tags(matrix: Matrix, pairs: list[Pair], report: Report) -> None:
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


def semantic_problems(matrix: Matrix, lines: LineIndex, source: str) -> list[Problem]:
    report = Report(source, lines)
    for check in (_check_names, _check_targets, _check_stacks, _check_references):
        check(matrix, report)
    if report.problems:
        return report.result()
    pairs = expanded_pairs(matrix)
    if not pairs:
        axes = matrix.matrix
        report.add(
            ("matrix",),
            f"expected at least one entry (got none: {len(axes.gpu)} GPU target(s) x {len(axes.stack)} stack(s), "
            f"{len(axes.exclude)} exclude rule(s), {len(axes.include)} include(s))",
        )
    _check_pairs(matrix, pairs, report)
    check_ids(matrix, pairs, report)
    _check_validated_tags(matrix, pairs, report)
    return report.result()
