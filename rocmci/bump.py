"""`invoke bump`: per stack, the newest aiter release its source offers and the newest torch its torch index serves,
built and validated on this runner before anyone merges them; writes a matrix.yaml patch (passing pins only) and a
pull-request body (the compatibility matrix and the LayerNorm figures before and after, and what was not proposed).

aiter candidates are tried newest first until one passes (at most `tries`), so a broken newest release gives way
to the newest one that works. torch is tried with the aiter the patch proposes, so the patch's combination is the
one that was validated.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field

from rocmci.bisect import Axis, BisectError, Stepper, StepRecord, _stack_entry, candidates_for
from rocmci.errors import MatrixError, RocmciError
from rocmci.labels import BUMP_SCHEMA
from rocmci.plan import Entry, Plan, parse_matrix, variant_entry
from rocmci.progress import Progress, table

if TYPE_CHECKING:
    from rocmci.build import BuildOptions


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Cell(_Record):
    """One GPU x stack result: the verdict label as the compat matrix shows it, and the LayerNorm figure."""

    entry_id: str
    aiter: str
    torch: str
    verdict: str
    label: str
    reasons: list[str] = Field(default_factory=list)
    k_norm_speedup: float | None = None
    k_norm_graph_us: float | None = None


class Tried(_Record):
    pin: str
    passed: bool
    why: str


class Proposal(_Record):
    axis: Axis
    current: str
    proposed: str | None = None
    tried: list[Tried] = Field(default_factory=list)
    note: str = ""


class StackBump(_Record):
    stack: str
    gpu: str
    before: Cell
    after: Cell
    proposals: list[Proposal]


class BumpResult(_Record):
    schema_: str = Field(default=BUMP_SCHEMA, alias="schema")
    matrix: str
    gpu: str
    stacks: list[StackBump]
    patch_path: str
    body_path: str
    proposed: int

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


def cell_of(record: StepRecord, entry: Entry) -> Cell:
    check = record.validation
    if check is None:
        label = f"build {record.build.status}"
        return Cell(
            entry_id=entry.id,
            aiter=entry.stack.aiter.label,
            torch=entry.stack.torch.version,
            verdict="error",
            label=label,
            reasons=[record.build.detail],
        )
    return Cell(
        entry_id=entry.id,
        aiter=entry.stack.aiter.label,
        torch=entry.stack.torch.version,
        verdict=check.verdict,
        label=check.label,
        reasons=check.reasons,
        k_norm_speedup=check.k_norm_speedup,
        k_norm_graph_us=check.k_norm_graph_us,
    )


def _why(record: StepRecord) -> str:
    check = record.validation
    if check is None:
        return f"build {record.build.status}: {record.build.detail}"
    return check.label + (f": {check.reasons[0]}" if check.reasons and check.verdict != "pass" else "")


# ---------------------------------------------------------------- the matrix.yaml edit


PIN_PATHS: dict[str, tuple[str, ...]] = {"torch": ("torch", "version"), "pypi": ("aiter", "pypi"), "git": ("aiter", "git", "ref")}


def edit_pin(text: str, source: str, stack: str, path: tuple[str, ...], old: str, new: str) -> str:
    """matrix.yaml's text with one pin changed in place (comments, anchors and layout kept), validated again."""
    _matrix, lines = parse_matrix(text, source)
    line_no = lines.line_for(("stacks", stack, *path))
    rows = text.splitlines(keepends=True)
    if line_no is None:
        raise BisectError(f"{source}: stacks.{stack}.{'.'.join(path)}: not found")
    pattern = re.compile(rf"(\b{re.escape(path[-1])}:\s*[\"']?){re.escape(old)}(?=[\"']?\s*[,}}\s#]|[\"']?$)")
    row = rows[line_no - 1]
    edited, count = pattern.subn(lambda m: m.group(1) + new, row, count=1)
    if count != 1:
        raise BisectError(f"{source}:{line_no}: stacks.{stack}.{'.'.join(path)}: cannot find {old!r} to replace on this line")
    rows[line_no - 1] = edited
    new_text = "".join(rows)
    before, after = _matrix.stacks, parse_matrix(new_text, source)[0].stacks
    shared = [name for name in before if name != stack and before[name] != after[name]]
    if shared:
        where = f"{source}:{line_no}: stacks.{stack}.{'.'.join(path)}"
        raise BisectError(f"{where}: the pin is shared through a YAML anchor with {', '.join(shared)}: edit it by hand")
    return new_text


def unified_patch(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}"))


def _patch_name(source: Path) -> str:
    """The matrix path as `git apply` run at the repository root (or beside the file) expects it."""
    try:
        return source.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return source.name


# ---------------------------------------------------------------- a canary: the head of an upstream branch

UPSTREAM_AITER = "https://github.com/ROCm/aiter"


def branch_head(repo: str, branch: str) -> str:
    """The commit a branch of `repo` points at now (`git ls-remote`, no clone)."""
    from rocmci.bisect import _git

    try:
        lines = _git("ls-remote", "--heads", repo, f"refs/heads/{branch}").split()
    except BisectError as exc:
        raise BisectError(f"--canary: cannot read the branches of {repo}: {exc}") from None
    if not lines:
        raise BisectError(f"--canary: {repo} has no branch {branch!r}")
    return lines[0]


def canary_head(entry: Entry, branch: str) -> str:
    """A canary builds code nobody reviewed: only for a git pin of the upstream aiter repository, never a fork."""
    git = entry.stack.aiter.git
    if git is None:
        raise BisectError(
            f"--canary: stack {entry.stack_name} pins aiter as {entry.stack.aiter.kind}; a branch head needs a git pin"
        )
    if git.repo.rstrip("/").removesuffix(".git") != UPSTREAM_AITER:
        raise BisectError(f"--canary: {git.repo} is not the upstream aiter repository {UPSTREAM_AITER}: never a canary of a fork")
    return branch_head(git.repo, branch)


# ---------------------------------------------------------------- one stack


@dataclasses.dataclass
class _StackRun:
    plan: Plan
    entry: Entry
    stepper: Stepper
    progress: Progress
    text: str
    tries: int
    pre: bool
    canary: str | None = None

    def evaluate(self, entry: Entry, pin: str) -> StepRecord:
        self.progress.line(self.entry.stack_name, "candidate", f"{entry.id}: build and validate")
        record = self.stepper.run(entry, pin)
        self.progress.line(self.entry.stack_name, "candidate", f"{entry.id}: {_why(record)}")
        return record

    def newer(self, axis: Axis, current: str) -> list[str]:
        options = self.stepper.build_options
        versions = candidates_for(self.entry, axis, options.ca_cert, options.wheelhouse).versions
        now = Version(current.removeprefix("v"))
        found = [v for v in versions if Version(v.removeprefix("v")) > now]
        if not self.pre:
            found = [v for v in found if not Version(v.removeprefix("v")).is_prerelease]
        return list(reversed(found))

    def edited(self, axis: Axis, old: str, new: str, text: str) -> str:
        kind = "torch" if axis == "torch" else self.entry.stack.aiter.kind
        return edit_pin(text, str(self.plan.source), self.entry.stack_name, PIN_PATHS[kind], old, new)

    def bump_aiter(self) -> tuple[Proposal, str, StepRecord | None]:
        current = self.entry.stack.aiter.git.ref if self.entry.stack.aiter.git else self.entry.stack.aiter.label
        proposal = Proposal(axis="aiter", current=current)
        if self.entry.stack.aiter.wheel:
            proposal.note = "aiter is pinned to one wheel URL: nothing to look up"
            return proposal, self.text, None
        try:
            newer = [canary_head(self.entry, self.canary)] if self.canary else self.newer("aiter", current)
        except BisectError as exc:
            proposal.note = str(exc)
            return proposal, self.text, None
        if not newer:
            proposal.note = f"{current} is the newest release its source offers"
            return proposal, self.text, None
        for pin in newer[: self.tries]:
            try:
                text = self.edited("aiter", current, pin, self.text)
            except (MatrixError, BisectError) as exc:
                proposal.tried.append(Tried(pin=pin, passed=False, why=f"matrix validation: {exc}"))
                continue
            record = self.evaluate(variant_entry(self.entry, aiter=pin), pin)
            passed = record.validation is not None and record.validation.verdict == "pass"
            proposal.tried.append(Tried(pin=pin, passed=passed, why=_why(record)))
            if passed:
                proposal.proposed = pin
                return proposal, text, record
        skipped = newer[self.tries :]
        if skipped:
            proposal.note = f"not tried (at most {self.tries} per run): {', '.join(skipped)}"
        return proposal, self.text, None

    def bump_torch(self, text: str, aiter: str | None) -> tuple[Proposal, str, StepRecord | None]:
        current = self.entry.stack.torch.version
        proposal = Proposal(axis="torch", current=current)
        try:
            newer = self.newer("torch", current)
        except BisectError as exc:
            proposal.note = str(exc)
            return proposal, text, None
        if not newer:
            proposal.note = (
                f"{current} is the newest torch {self.entry.stack.torch.index} serves for Python {self.entry.stack.python}"
            )
            return proposal, text, None
        pin = newer[0]
        try:
            candidate_text = self.edited("torch", current, pin, text)
        except (MatrixError, BisectError) as exc:
            proposal.tried.append(Tried(pin=pin, passed=False, why=f"matrix validation: {exc}"))
            return proposal, text, None
        record = self.evaluate(variant_entry(self.entry, aiter=aiter, torch=pin), pin)
        passed = record.validation is not None and record.validation.verdict == "pass"
        proposal.tried.append(Tried(pin=pin, passed=passed, why=_why(record)))
        if not passed:
            return proposal, text, None
        proposal.proposed = pin
        return proposal, candidate_text, record


def bump_stack(run: _StackRun) -> tuple[StackBump, str]:
    before_record = run.evaluate(run.entry, run.entry.stack.aiter.label)
    before = cell_of(before_record, run.entry)
    aiter, text, aiter_record = run.bump_aiter()
    torch, text, torch_record = run.bump_torch(text, aiter.proposed)
    final = torch_record or aiter_record
    after_entry = variant_entry(run.entry, aiter=aiter.proposed, torch=torch.proposed) if final else run.entry
    after = cell_of(final, after_entry) if final else before
    return StackBump(stack=run.entry.stack_name, gpu=run.entry.gpu, before=before, after=after, proposals=[aiter, torch]), text


# ---------------------------------------------------------------- the task


def run_bump(
    plan: Plan,
    gpu: str,
    stacks: list[str],
    build_options: BuildOptions,
    out_dir: Path,
    tries: int = 3,
    pre: bool = False,
    progress: Progress | None = None,
    canary: str | None = None,
) -> BumpResult:
    from rocmci import build

    if tries < 1:
        raise RocmciError(f"--tries: expected a whole number >= 1 (got {tries})")
    names = stacks or list(dict.fromkeys(e.stack_name for e in plan.select(gpu)))
    entries = [_stack_entry(plan, gpu, name) for name in names]
    options = dataclasses.replace(build_options, log_dir=out_dir / "logs", check_registry=False, push=False)
    progress = progress or Progress(width=max(len(n) for n in names))
    original = Path(plan.source).read_text()
    text = original
    bumps: list[StackBump] = []
    stepper = Stepper(options, out_dir / "entries", progress, backend=build.choose_backend(options.backend))
    with build.file_server(options, entries) as server:
        stepper.server = server
        for entry in entries:
            run = _StackRun(plan, entry, stepper, progress, text, tries, pre, canary)
            bump, text = bump_stack(run)
            bumps.append(bump)
    out_dir.mkdir(parents=True, exist_ok=True)
    patch_path, body_path = out_dir / "matrix.patch", out_dir / "pr-body.md"
    patch_path.write_text(unified_patch(original, text, _patch_name(Path(plan.source))))
    proposed = sum(p.proposed is not None for b in bumps for p in b.proposals)
    result = BumpResult(
        matrix=str(plan.source),
        gpu=gpu,
        stacks=bumps,
        patch_path=str(patch_path),
        body_path=str(body_path),
        proposed=proposed,
    )
    body_path.write_text(render_body(result))
    (out_dir / "bump.json").write_text(
        json.dumps(result.model_dump(mode="json", by_alias=True), indent=2, allow_nan=False) + "\n"
    )
    return result


# ---------------------------------------------------------------- the pull-request body


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _figure(cell: Cell) -> str:
    if cell.k_norm_speedup is None:
        return "no GPU figure (" + ("CPU only" if "CPU only" in cell.label else cell.verdict) + ")"
    us = f", {cell.k_norm_graph_us:.1f} us" if cell.k_norm_graph_us is not None else ""
    return f"{cell.k_norm_speedup:.2f}x{us}"


def _matrix_table(result: BumpResult, when: Literal["before", "after"]) -> list[str]:
    lines = [f"| stack | {result.gpu} |", "| --- | --- |"]
    for bump in result.stacks:
        cell = bump.before if when == "before" else bump.after
        lines.append(f"| {_md(bump.stack)} (torch {cell.torch}, aiter {cell.aiter}) | {_md(cell.label)} |")
    return lines


def render_body(result: BumpResult) -> str:
    lines = [
        "## rocmci bump",
        "",
        f"Candidates built and validated by `invoke bump --gpu {result.gpu}` on this runner before this pull request was "
        "opened. Only pins that passed are in the patch; the others are listed below with why.",
        "",
        "| stack | pin | current | proposed | tried |",
        "| --- | --- | --- | --- | --- |",
    ]
    for bump in result.stacks:
        for p in bump.proposals:
            tried = "; ".join(f"{t.pin}: {'pass' if t.passed else t.why}" for t in p.tried) or p.note or "-"
            lines.append(f"| {_md(bump.stack)} | {p.axis} | {_md(p.current)} | {_md(p.proposed or '-')} | {_md(tried)} |")
    lines += ["", "### Compatibility matrix before", "", *_matrix_table(result, "before"), ""]
    lines += ["### Compatibility matrix after", "", *_matrix_table(result, "after"), ""]
    lines += [
        "### LayerNorm per GPU (aiter over torch with fp32 parameters, k_norm 8192x128 bf16, CUDA-graph replay)",
        "",
        "| stack | GPU | before | after |",
        "| --- | --- | --- | --- |",
        *[f"| {_md(b.stack)} | {_md(b.gpu)} | {_figure(b.before)} | {_figure(b.after)} |" for b in result.stacks],
        "",
    ]
    refused = [(b.stack, p) for b in result.stacks for p in b.proposals if p.proposed is None]
    failed = [(stack, p, t) for b in result.stacks for p in b.proposals for t in p.tried if not t.passed for stack in [b.stack]]
    if refused or failed:
        lines += ["### Not proposed", ""]
        lines += [f"- {_md(stack)}: {p.axis} {_md(t.pin)}: {_md(t.why)}" for stack, p, t in failed]
        lines += [f"- {_md(stack)}: {p.axis}: {_md(p.note)}" for stack, p in refused if p.note]
        lines.append("")
    return "\n".join(lines)


def summary_table(result: BumpResult) -> str:
    rows = [
        (
            b.stack,
            p.axis,
            p.current,
            p.proposed or "-",
            "; ".join(f"{t.pin}: {'pass' if t.passed else 'fail'}" for t in p.tried) or p.note,
        )
        for b in result.stacks
        for p in b.proposals
    ]
    return table(("stack", "pin", "current", "proposed", "tried"), rows)


def patch_is_empty(path: Path) -> bool:
    return not path.exists() or os.path.getsize(path) == 0
