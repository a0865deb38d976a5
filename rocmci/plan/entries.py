"""The plan: a validated matrix expanded into entries (GPU model x stack), each with its shared build and tags."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocmci.errors import MatrixError, Problem
from rocmci.plan.rules import Pair, Report, check_ids, expanded_pairs
from rocmci.plan.schema import Gates, Matrix, Stack, Target
from rocmci.plan.tags import ROOT, BuildContext, build_args_for, build_id, content_hash, entry_id, labels_for, validated_tag_for
from rocmci.plan.yamlfile import LineIndex


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
    # The runner labels its image is built on (matrix.yaml `builders`, or the stack's own `builder`).
    builder_runs_on: tuple[str, ...] = ()

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
        """The release repository (validated tags and reports): matrix.yaml's `repository`."""
        return self.matrix.repository

    @property
    def release_repository(self) -> str:
        return self.matrix.repository

    @property
    def staging_repository(self) -> str:
        """Where builds push their content-hashed tags first: matrix.yaml's `staging`, else the release repository."""
        return self.matrix.staging or self.matrix.repository


def _entry(matrix: Matrix, pair: Pair, context_digest: str) -> Entry:
    stack = matrix.stacks[pair.stack]
    return _entry_of(matrix, pair.gpu, pair.stack, stack, context_digest, matrix.builders.for_stack(stack))


def _entry_of(matrix: Matrix, gpu: str, stack_name: str, stack: Stack, context_digest: str, builder_runs_on: list[str]) -> Entry:
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
        builder_runs_on=tuple(builder_runs_on),
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
    digest = BuildContext(context_root).digest
    return _entry_of(matrix, entry.gpu, entry.stack_name, stack, digest, list(entry.builder_runs_on))


def expand(matrix: Matrix, lines: LineIndex, source: str, context: BuildContext) -> tuple[Entry, ...]:
    """The matrix's entries in order (axes product less excludes, then includes), each with its tag."""
    pairs = expanded_pairs(matrix)
    report = Report(source, lines)
    check_ids(matrix, pairs, report)
    problems = report.result()
    if problems:
        raise MatrixError(problems)
    digest = context.digest
    return tuple(_entry(matrix, pair, digest) for pair in pairs)


def shared_builds(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Entries grouped by the image they share (its content-hashed tag), in plan order."""
    shared: dict[str, list[Entry]] = {}
    for entry in entries:
        shared.setdefault(entry.tag, []).append(entry)
    return shared
