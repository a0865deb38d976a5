"""`invoke bisect`: the first bad pin between a good one and a bad one, by building and validating candidates.

Candidates come from where the stack's pins come from: a pypi pin's `index:` (else pip's configured index, or the
offline wheelhouse when a build installs from one), the stack's torch index, or a git pin's release tags. Each
step is a one-off entry with the candidate pin (`matrix.variant_entry`), built on the same layers below the changed
pin, validated in its container, and judged by `report.entry_report` (the one verdict function). The steps go to
a log (reports/bisect/<gpu>-<stack>-<axis>/log.jsonl) as they finish, so an interrupted bisect resumes without
rebuilding or revalidating anything the log holds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field

from rocmci.errors import RocmciError
from rocmci.labels import BISECT_SCHEMA
from rocmci.plan import Entry, Plan, variant_entry
from rocmci.progress import Progress, table

if TYPE_CHECKING:
    from rocmci.build import Backend, BuildOptions, FileServer

Axis = Literal["aiter", "torch"]
Class = Literal["good", "bad", "skip"]
PROJECTS = {"aiter": "amd-aiter", "torch": "torch"}
DEFAULT_INDEX = "https://pypi.org/simple/"
FINDING_CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
INDEX_TIMEOUT_S = 30


class BisectError(RocmciError):
    exit_code = 2


# ---------------------------------------------------------------- candidates


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Every version a source offers for a pin, oldest first, and where they came from (for messages and reports)."""

    versions: list[str]
    source: str


def pip_configured_index() -> str:
    """The index pip itself would use here: PIP_INDEX_URL, else `index-url` from pip's configuration, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("global.index-url", "install.index-url"):
            return value.strip().strip("'\"")
    return DEFAULT_INDEX


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _fits_python(filename: str, python: str | None) -> bool:
    """A wheel that installs on the stack's CPython on x86-64 Linux (an sdist or a pure wheel always does)."""
    if python is None or not filename.endswith(".whl"):
        return True
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    cpython = "cp" + python.replace(".", "")
    return any(
        tag.interpreter in (cpython, "py3") and (tag.platform == "any" or ("linux" in tag.platform and "x86_64" in tag.platform))
        for tag in tags
    )


def _sorted_public(versions: Iterable[str]) -> list[str]:
    """Public versions (`2.13.0+rocm7.2` -> `2.13.0`), unique, oldest first."""
    parsed = {v.public: v for v in (_version(text) for text in versions) if v is not None}
    return sorted(parsed, key=lambda key: parsed[key])


def _short_reason(exc: Exception) -> str:
    """The operating system's words for a failed connection ('Connection refused'), not urllib3's whole chain."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\"()\[\]]+)", text)
    if errno:
        return errno.group(1).strip().rstrip(".,")
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def index_versions(index_url: str, project: str, ca_cert: Path | None = None, python: str | None = None) -> list[str]:
    """A project's versions from a package index's simple API (PEP 691 JSON or PEP 503 HTML), yanked files left out."""
    import requests
    from pypi_simple import NoSuchProjectError, PyPISimple

    session = requests.Session()
    if ca_cert is not None:
        session.verify = str(ca_cert)
    try:
        with PyPISimple(endpoint=index_url.rstrip("/") + "/", session=session) as client:
            page = client.get_project_page(project, timeout=INDEX_TIMEOUT_S)
    except NoSuchProjectError:
        raise BisectError(f"the index {index_url} has no project {project}") from None
    except (requests.RequestException, ValueError) as exc:
        raise BisectError(f"cannot read {project} from the index {index_url}: {_short_reason(exc)}") from None
    files = [p for p in page.packages if p.version and not p.is_yanked and _fits_python(p.filename, python)]
    return _sorted_public(p.version or "" for p in files)


def wheelhouse_versions(wheelhouse: Path, project: str) -> list[str]:
    versions = []
    for path in wheelhouse.glob("*.whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if name == project:
            versions.append(str(version))
    return _sorted_public(versions)


def git_tag_versions(repo: str) -> list[str]:
    """A git pin's release tags (`git ls-remote --tags`: no clone), as they are spelled, oldest first."""
    done = subprocess.run(
        ["git", "ls-remote", "--tags", "--refs", repo], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"git exited {done.returncode}"])[-1]
        raise BisectError(f"cannot list the tags of {repo}: {reason}")
    tags = [line.split("refs/tags/", 1)[1] for line in done.stdout.splitlines() if "refs/tags/" in line]
    released = {tag: v for tag in tags if (v := _version(tag.removeprefix("v"))) is not None}
    return sorted(released, key=lambda tag: released[tag])


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, timeout=600, cwd=cwd)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"git exited {done.returncode}"])[-1]
        raise BisectError(f"git {args[0]}: {reason}")
    return done.stdout


def git_commits_between(repo: str, good: str, bad: str) -> list[str]:
    """GOOD, then every commit on BAD's first-parent line after GOOD up to BAD, as full hashes (oldest first).

    A blobless clone (`--filter=blob:none`) fetches commits and trees only; a `file://` source honours the filter
    only where its repository sets `uploadpack.allowFilter` (otherwise git warns and clones everything)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rocmci-bisect-git-") as tmp:
        clone = Path(tmp) / "aiter.git"
        try:
            _git("clone", "--quiet", "--bare", "--filter=blob:none", repo, str(clone))
        except BisectError as exc:
            raise BisectError(f"cannot clone {repo}: {exc}") from None
        ends = []
        for name, ref in (("GOOD", good), ("BAD", bad)):
            try:
                ends.append(_git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=clone).strip())
            except BisectError:
                raise BisectError(f"--aiter: {name} {ref} is no commit, tag or branch of {repo}") from None
        if subprocess.run(["git", "merge-base", "--is-ancestor", *ends], cwd=clone, check=False).returncode != 0:
            raise BisectError(f"--aiter: GOOD {good} is not an ancestor of BAD {bad} in {repo}: expected OLDER..NEWER")
        between = _git("rev-list", "--reverse", "--first-parent", f"{ends[0]}..{ends[1]}", cwd=clone).split()
    return [ends[0], *between]


def candidates_for(entry: Entry, axis: Axis, ca_cert: Path | None, wheelhouse: Path | None) -> Candidates:
    """Every version the pin's source offers, oldest first."""
    stack = entry.stack
    if axis == "torch":
        index = stack.torch.index
        return Candidates(index_versions(index, "torch", ca_cert, stack.python), f"the torch index {index}")
    if stack.aiter.git:
        return Candidates(git_tag_versions(stack.aiter.git.repo), f"the release tags of {stack.aiter.git.repo}")
    if stack.aiter.wheel:
        raise BisectError(f"stack {entry.stack_name}: aiter is pinned to one wheel URL; there is no series to bisect")
    if stack.aiter.index is None and wheelhouse is not None:
        return Candidates(wheelhouse_versions(wheelhouse, PROJECTS["aiter"]), f"the wheelhouse {wheelhouse}")
    index = stack.aiter.index or pip_configured_index()
    return Candidates(index_versions(index, PROJECTS["aiter"], ca_cert, stack.python), f"the index {index}")


def parse_range(flag: str, text: str) -> tuple[str, str]:
    good, sep, bad = text.partition("..")
    if not sep or not good or not bad or ".." in bad:
        raise BisectError(f"{flag}: expected GOOD..BAD such as 0.1.10..0.1.14 (got {text!r})")
    return good, bad


def _position(versions: list[str], pin: str) -> int | None:
    """Where `pin` is in `versions`, comparing as versions (0.1.10 == 0.1.10.0, v0.1.20 == 0.1.20) where they parse."""
    wanted = _version(pin.removeprefix("v"))
    for i, text in enumerate(versions):
        if text == pin or (wanted is not None and _version(text.removeprefix("v")) == wanted):
            return i
    return None


def select_range(flag: str, found: Candidates, good: str, bad: str, pre: bool) -> list[str]:
    """GOOD, the candidates strictly between, BAD: oldest first. Pre- and dev releases between only with `pre`."""
    where = {}
    for name, pin in (("GOOD", good), ("BAD", bad)):
        at = _position(found.versions, pin)
        if at is None:
            near = ", ".join(found.versions[-8:]) or "none"
            raise BisectError(f"{flag}: {name} {pin} is not offered by {found.source} (its newest: {near})")
        where[name] = at
    if where["GOOD"] >= where["BAD"]:
        raise BisectError(f"{flag}: GOOD {good} is not older than BAD {bad}: expected OLDER..NEWER")
    between = found.versions[where["GOOD"] + 1 : where["BAD"]]
    if not pre:
        between = [v for v in between if not (_version(v.removeprefix("v")) or Version("0")).is_prerelease]
    return [found.versions[where["GOOD"]], *between, found.versions[where["BAD"]]]


# ---------------------------------------------------------------- step records (the log)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Layer(_Record):
    step: str
    cached: bool


class BuildRecord(_Record):
    status: Literal["built", "skipped", "failed"]
    seconds: float
    detail: str = ""
    layers: list[Layer] = Field(default_factory=list)

    @property
    def cached(self) -> int:
        return sum(layer.cached for layer in self.layers)

    def reused_below(self, marker: str) -> bool | None:
        """True when every layer before the first step naming `marker` came from the cache (None: no layers seen)."""
        steps = [layer.step for layer in self.layers]
        at = next((i for i, step in enumerate(steps) if marker in step), None)
        if at is None:
            return None
        return all(layer.cached for layer in self.layers[:at])


class FindingRecord(_Record):
    code: str
    severity: str
    message: str = ""


class ValidationRecord(_Record):
    verdict: str
    label: str
    reasons: list[str] = Field(default_factory=list)
    findings: list[FindingRecord] = Field(default_factory=list)
    gates: dict[str, bool] = Field(default_factory=dict)
    k_norm_speedup: float | None = None
    k_norm_graph_us: float | None = None
    seconds: float
    report_dir: str


class StepRecord(_Record):
    pin: str
    entry_id: str
    tag: str
    build: BuildRecord
    validation: ValidationRecord | None = None
    finished: str


class StepLog:
    """Finished steps, one JSON line each, keyed by image tag: a resumed bisect reuses every step it finds here."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, StepRecord]:
        if not self.path.exists():
            return {}
        records: dict[str, StepRecord] = {}
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = StepRecord.model_validate_json(line)
            except ValueError:
                # A line cut short by an interruption: that step runs again.
                print(f"{self.path}:{number}: unreadable step record, ignored (that step runs again)", file=sys.stderr)
                continue
            records[record.tag] = record
        return records

    def append(self, record: StepRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as log:
            log.write(record.model_dump_json() + "\n")
            log.flush()
            os.fsync(log.fileno())


# ---------------------------------------------------------------- what counts as bad


def check_bad_if(bad_if: str) -> str:
    if bad_if == "verdict" or FINDING_CODE.fullmatch(bad_if) or re.fullmatch(r"gate:\S+", bad_if):
        return bad_if
    raise BisectError(
        f"--bad-if: expected verdict, a finding code such as aiter.symbol.missing, or gate:NAME such as "
        f"gate:k_norm.speedup_vs_torch_upcast (got {bad_if!r})"
    )


def classify(record: StepRecord, bad_if: str) -> tuple[Class, str]:
    """good, bad or skip, with why. A failed build or a validation that could not run answers nothing: skip."""
    if record.build.status == "failed":
        return "skip", f"build failed: {record.build.detail}"
    check = record.validation
    if check is None:
        return "skip", "not validated"
    if check.verdict in ("error", "not-run"):
        return "skip", f"verdict {check.verdict}: {'; '.join(check.reasons) or 'no reason given'}"
    if bad_if == "verdict":
        why = f"verdict {check.label}" + (f": {check.reasons[0]}" if check.reasons else "")
        return ("good" if check.verdict == "pass" else "bad"), why
    if bad_if.startswith("gate:"):
        gate = bad_if.removeprefix("gate:")
        if gate not in check.gates:
            return "skip", f"gate {gate} was not measured (known here: {', '.join(check.gates) or 'none'})"
        return ("good", f"gate {gate} passed") if check.gates[gate] else ("bad", f"gate {gate} failed")
    hit = next((f for f in check.findings if f.code == bad_if), None)
    return ("bad", f"{hit.code} ({hit.severity}): {hit.message}") if hit else ("good", f"no {bad_if} finding")


def changed_between(good: StepRecord, bad: StepRecord) -> list[str]:
    """What the validation of the first bad pin shows that the last good one did not: findings, gates, figures."""
    if good.validation is None or bad.validation is None:
        return []
    before, after = good.validation, bad.validation
    lines: list[str] = []
    if before.verdict != after.verdict:
        lines.append(f"verdict {before.label} -> {after.label}")
    old = {f.code: f for f in before.findings if f.severity in ("error", "warning")}
    new = {f.code: f for f in after.findings if f.severity in ("error", "warning")}
    lines += [f"+ finding {code} ({f.severity}): {f.message}" for code, f in new.items() if code not in old]
    lines += [f"- finding {code} ({f.severity}) gone" for code, f in old.items() if code not in new]
    for gate in sorted(set(before.gates) & set(after.gates)):
        if before.gates[gate] != after.gates[gate]:
            lines.append(f"gate {gate}: {'pass' if before.gates[gate] else 'fail'} -> {'pass' if after.gates[gate] else 'fail'}")
    if before.k_norm_speedup is not None and after.k_norm_speedup is not None:
        lines.append(f"k_norm speedup {before.k_norm_speedup:.2f}x -> {after.k_norm_speedup:.2f}x")
    if not lines:
        lines += [f"+ reason: {reason}" for reason in after.reasons if reason not in before.reasons]
    return lines


# ---------------------------------------------------------------- one step: build, validate, judge

STEP_LINE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
BAKE_STEP = re.compile(r"^#(\d+) \[[^\]]*\b\d+/\d+\] (.*)$")


def layers_from_log(text: str) -> list[Layer]:
    """Which build steps the engine took from its cache: the legacy builder's `---> Using cache` after a
    `Step N/M`, or BuildKit's `#N CACHED` for a `#N [stage k/m]` step."""
    layers: list[Layer] = []
    bake_steps: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if (match := STEP_LINE.match(line) or BAKE_STEP.match(line)) and match.group(match.lastindex or 0).startswith("FROM "):
            layers, bake_steps = [], {}  # a stage's base is no layer of its own; what counts starts after it
        elif match := STEP_LINE.match(line):
            layers.append(Layer(step=match.group(3), cached=False))
        elif line == "---> Using cache" and layers:
            layers[-1] = Layer(step=layers[-1].step, cached=True)
        elif match := BAKE_STEP.match(line):
            bake_steps[match.group(1)] = len(layers)
            layers.append(Layer(step=match.group(2), cached=False))
        elif (match := re.match(r"^#(\d+) CACHED$", line)) and match.group(1) in bake_steps:
            at = bake_steps[match.group(1)]
            layers[at] = Layer(step=layers[at].step, cached=True)
    return layers


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def validation_record(entry: Entry, entry_dir: Path, seconds: float) -> ValidationRecord:
    """The evidence of one validated entry, judged by rocmci.report (the one place verdicts come from)."""
    from rocmci.report import entry_report

    item = entry_report(entry_dir, entry.summary())
    probe, smoke = item.evidence.probe, item.evidence.smoke
    return ValidationRecord(
        verdict=item.verdict.verdict,
        label=item.label,
        reasons=list(item.verdict.reasons),
        findings=[FindingRecord(code=f.code, severity=f.severity, message=f.message) for f in (probe.findings if probe else [])],
        gates={g.name: g.passed for g in (smoke.gates if smoke else [])},
        k_norm_speedup=item.k_norm.speedup_vs_torch_upcast if item.k_norm else None,
        k_norm_graph_us=item.k_norm.graph_us if item.k_norm else None,
        seconds=round(seconds, 3),
        report_dir=str(entry_dir),
    )


@dataclasses.dataclass
class Stepper:
    """Builds and validates one candidate entry at a time on one host, through one build file server."""

    build_options: BuildOptions
    reports_dir: Path
    progress: Progress
    server: FileServer | None = None
    backend: Backend = "sdk"
    built: int = 0
    validated: int = 0

    def run(self, entry: Entry, pin: str) -> StepRecord:
        from rocmci import build, validate

        assert self.server is not None, "Stepper.run needs the build file server"
        result = build.build_entry(entry, self.build_options, self.server, self.backend, self.progress)
        log_text = result.log.read_text() if result.log and result.log.exists() else ""
        build_record = BuildRecord(
            status=result.status, seconds=round(result.seconds, 3), detail=result.detail, layers=layers_from_log(log_text)
        )
        self.built += result.status != "skipped"
        validation = None
        if result.status != "failed":
            started = time.monotonic()
            options = validate.RunOptions(
                repository=self.build_options.repository, reports_dir=self.reports_dir, pull_missing=False
            )
            validate.validate_entry(entry, options, self.progress)
            self.validated += 1
            validation = validation_record(entry, self.reports_dir / entry.id, time.monotonic() - started)
        return StepRecord(pin=pin, entry_id=entry.id, tag=entry.tag, build=build_record, validation=validation, finished=_now())


# ---------------------------------------------------------------- the bisect


@dataclasses.dataclass(frozen=True)
class BisectRequest:
    gpu: str
    stack: str
    axis: Axis
    good: str
    bad: str
    bad_if: str = "verdict"
    pre: bool = False
    reports_dir: Path = Path("reports")
    commits: bool = False

    @property
    def name(self) -> str:
        return f"{self.gpu}-{self.stack}-{self.axis}"

    @property
    def workdir(self) -> Path:
        return self.reports_dir / "bisect" / self.name


class StepView(_Record):
    pin: str
    entry_id: str
    result: Class
    why: str
    from_log: bool
    record: StepRecord


class BisectResult(_Record):
    schema_: str = Field(default=BISECT_SCHEMA, alias="schema")
    gpu: str
    stack: str
    axis: Axis
    good: str
    bad: str
    bad_if: str
    source: str
    candidates: list[str]
    first_bad: str
    last_good: str
    suspects: list[str] = Field(default_factory=list, description="pins between last_good and first_bad that were skipped")
    changed: list[str]
    steps: list[StepView]
    validations: int
    validations_new: int
    builds_new: int
    binary_search_bound: int
    started: str
    finished: str
    wall_s: float

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


def _stack_entry(plan: Plan, gpu: str, stack: str) -> Entry:
    entries = [e for e in plan.select(gpu) if e.stack_name == stack]
    if not entries:
        stacks = ", ".join(sorted({e.stack_name for e in plan.select(gpu)})) or "none"
        raise BisectError(f"{plan.source}: --stack: no entry pairs {gpu} with stack {stack!r} (stacks on {gpu}: {stacks})")
    return entries[0]


def commit_range(entry: Entry, request: BisectRequest) -> list[str]:
    git = entry.stack.aiter.git
    if request.axis != "aiter" or git is None:
        raise BisectError(f"--commits: stack {entry.stack_name} has no git aiter pin (commits exist only for git pins)")
    pins = git_commits_between(git.repo, request.good, request.bad)
    if len(pins) < 2:
        raise BisectError(f"--aiter: GOOD {request.good} is not older than BAD {request.bad}: expected OLDER..NEWER")
    return pins


def bound(candidates: int) -> int:
    """Validations a bisect needs at most without skips: both ends, then a binary search of the pins between."""
    return 2 + (math.ceil(math.log2(candidates - 1)) if candidates > 2 else 0)


def _next_probe(lo: int, hi: int, skipped: set[int]) -> int | None:
    """The untried pin nearest the middle of (lo, hi), as `git bisect skip` moves off a skipped one."""
    middle = (lo + hi) // 2
    choices = sorted((i for i in range(lo + 1, hi) if i not in skipped), key=lambda i: (abs(i - middle), i))
    return choices[0] if choices else None


def run_bisect(
    plan: Plan,
    request: BisectRequest,
    build_options: BuildOptions,
    progress: Progress | None = None,
    found: Candidates | None = None,
) -> BisectResult:
    """GOOD must be good and BAD bad; then a binary search over the pins between. Writes bisect.json and bisect.md."""
    from rocmci import build

    started_at, started = _now(), time.monotonic()
    check_bad_if(request.bad_if)
    flag = f"--{request.axis}"
    entry = _stack_entry(plan, request.gpu, request.stack)
    options = dataclasses.replace(build_options, log_dir=request.workdir / "logs", check_registry=False, push=False)
    if request.commits:
        pins = commit_range(entry, request)
        found = Candidates(pins, f"the first-parent commits of {entry.stack.aiter.git.repo}")  # type: ignore[union-attr]
    else:
        found = found or candidates_for(entry, request.axis, options.ca_cert, options.wheelhouse)
        pins = select_range(flag, found, request.good, request.bad, request.pre)
    progress = progress or Progress(width=max(len(request.name), 12))
    progress.line(request.name, "candidates", f"{len(pins)} from {found.source}: {', '.join(pins)}")
    entries = [variant_entry(entry, **{request.axis: pin}) for pin in pins]  # type: ignore[arg-type]
    log = StepLog(request.workdir / "log.jsonl")
    known = log.load()
    views: dict[int, StepView] = {}
    stepper = Stepper(options, request.workdir / "entries", progress, backend=build.choose_backend(options.backend))

    def step(i: int) -> Class:
        record, from_log = known.get(entries[i].tag), True
        if record is None:
            progress.line(request.name, f"step {len(views) + 1}", f"{flag} {pins[i]}: build and validate {entries[i].tag}")
            record, from_log = stepper.run(entries[i], pins[i]), False
            log.append(record)
        result, why = classify(record, request.bad_if)
        views[i] = StepView(pin=pins[i], entry_id=entries[i].id, result=result, why=why, from_log=from_log, record=record)
        progress.line(
            request.name, f"step {len(views)}", f"{pins[i]} is {result.upper()}: {why}" + (" (from the log)" if from_log else "")
        )
        return result

    with build.file_server(options, entries[:1]) as server:
        stepper.server = server
        if (got := step(0)) != "good":
            raise BisectError(
                f"{flag} {request.good}..{request.bad}: GOOD {pins[0]} is {got}, not good ({views[0].why}): pick an older GOOD"
            )
        last = len(pins) - 1
        if (got := step(last)) != "bad":
            raise BisectError(
                f"{flag} {request.good}..{request.bad}: BAD {pins[last]} is {got}, not bad ({views[last].why}): nothing to bisect"
            )
        lo, hi, skipped = 0, last, set()
        while (probe := _next_probe(lo, hi, skipped)) is not None:
            got = step(probe)
            if got == "good":
                lo = probe
            elif got == "bad":
                hi = probe
            else:
                skipped.add(probe)
    ordered = list(views.values())  # in the order they ran
    result = BisectResult(
        gpu=request.gpu,
        stack=request.stack,
        axis=request.axis,
        good=request.good,
        bad=request.bad,
        bad_if=request.bad_if,
        source=found.source,
        candidates=pins,
        first_bad=pins[hi],
        last_good=pins[lo],
        suspects=[pins[i] for i in sorted(skipped) if lo < i < hi],
        changed=changed_between(views[lo].record, views[hi].record),
        steps=ordered,
        validations=sum(v.record.validation is not None for v in ordered),
        validations_new=stepper.validated,
        builds_new=stepper.built,
        binary_search_bound=bound(len(pins)),
        started=started_at,
        finished=_now(),
        wall_s=round(time.monotonic() - started, 1),
    )
    write_result(request.workdir, result)
    return result


# ---------------------------------------------------------------- output

AITER_LAYER = "install_aiter.sh"
TORCH_LAYER = "torch=="


def layer_note(record: BuildRecord, axis: Axis) -> str:
    if record.status == "skipped":
        return "image existed"
    if not record.layers:
        return "-"
    below = record.reused_below(AITER_LAYER if axis == "aiter" else TORCH_LAYER)
    return f"{record.cached}/{len(record.layers)} cached" + (
        "" if below is None else f", below {axis}: {'all' if below else 'NOT all'} reused"
    )


def step_rows(result: BisectResult) -> list[tuple[str, ...]]:
    rows = []
    for number, view in enumerate(result.steps, 1):
        check = view.record.validation
        rows.append(
            (
                str(number),
                view.pin,
                view.result,
                check.label if check else "-",
                f"{view.record.build.status} {view.record.build.seconds:.0f}s, {layer_note(view.record.build, result.axis)}",
                f"{check.seconds:.0f}s" if check else "-",
                "log" if view.from_log else "new",
                view.why,
            )
        )
    return rows


STEP_HEADERS = ("#", "pin", "result", "verdict", "build", "validate", "from", "why")


def headline(result: BisectResult) -> str:
    text = f"first bad {result.axis} pin: {result.first_bad} (last good: {result.last_good})"
    if result.suspects:
        text += f"; skipped between them, so the first bad may be any of {', '.join([*result.suspects, result.first_bad])}"
    return text


def summary_table(result: BisectResult) -> str:
    return table(STEP_HEADERS, step_rows(result))


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: BisectResult) -> str:
    lines = [
        f"# rocmci bisect: {result.gpu} x {result.stack}, {result.axis} {result.good}..{result.bad}",
        "",
        f"**{_md(headline(result))}**",
        "",
        f"Bad means: `{result.bad_if}`. Candidates from {_md(result.source)}: {', '.join(result.candidates)}.",
        f"Validations: {result.validations} ({result.validations_new} run now, the rest from the log); a binary search "
        f"with both ends needs at most {result.binary_search_bound}. Wall time {result.wall_s:.0f}s.",
        "",
        "What changed between the last good and the first bad pin:",
        "",
        *[f"- {_md(line)}" for line in result.changed or ["nothing the validation records (compare the step reports)"]],
        "",
        "| " + " | ".join(STEP_HEADERS) + " |",
        "|" + " --- |" * len(STEP_HEADERS),
        *["| " + " | ".join(_md(cell) for cell in row) + " |" for row in step_rows(result)],
        "",
        "Each step's report: " + ", ".join(f"`{v.record.validation.report_dir}`" for v in result.steps if v.record.validation),
    ]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_result(workdir: Path, result: BisectResult) -> tuple[Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = workdir / "bisect.json", workdir / "bisect.md"
    _write_atomic(json_path, json.dumps(result.model_dump(mode="json", by_alias=True), indent=2, allow_nan=False) + "\n")
    _write_atomic(md_path, render_markdown(result))
    return json_path, md_path


def read_result(path: Path) -> BisectResult:
    return BisectResult.model_validate_json(path.read_text())
