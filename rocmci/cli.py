"""What each `invoke` task does, as one function per task: options resolved once, modules called, output printed.

tasks.py only parses flags and calls these. Every RocmciError becomes plain lines on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from rocmci.errors import ExitCode, InputError, RocmciError
from rocmci.plan import Entry, Plan, github_build_matrix, github_matrix, load_plan, shared_builds
from rocmci.progress import Progress, table

P = ParamSpec("P")
R = TypeVar("R")


class TaskFailed(Exception):
    """Raised with the exit code a task ends with; tasks.py turns it into invoke.Exit."""

    def __init__(self, code: int, message: str = ""):
        self.code = code
        super().__init__(message)


def reports_errors(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except RocmciError as exc:
            print(str(exc), file=sys.stderr)
            raise TaskFailed(exc.exit_code) from None
        except BrokenPipeError:
            # The reader went away (`invoke matrix --json | head`): stop quietly, as Python's docs advise.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise TaskFailed(1) from None

    return wrapper


def repository_for(plan: Plan, registry: str | None, default: str | None = None) -> str:
    """`--registry` takes a host (127.0.0.1:5000) or a repository (ghcr.io/org/rocmci); without it, `default` (the
    matrix's release repository unless given)."""
    default = default or plan.repository
    if registry is None:
        return default
    if not registry.strip():
        raise InputError("--registry: empty; give a host or repository, or leave the option out for the matrix's repository")
    from rocmci.oci import refuse_credentials

    refuse_credentials(registry)
    return registry if "/" in registry else f"{registry}/{default.rsplit('/', 1)[-1]}"


def _selected(file: str | None, gpu: str | None, entry: str | None) -> tuple[Plan, list[Entry]]:
    plan = load_plan(file)
    return plan, plan.select(gpu, entry)


def _for_gpu(file: str | None, gpu: str | None, entry: str | None) -> tuple[Plan, list[Entry]]:
    """_selected for the tasks that work on one GPU target: without --gpu, one line naming the choices."""
    from rocmci.errors import MatrixError, Problem

    plan = load_plan(file)
    if not gpu:
        known = ", ".join(plan.matrix.targets)
        raise MatrixError([Problem(str(plan.source), None, "--gpu", f"required: the GPU target to work on, one of {known}")])
    return plan, plan.select(gpu, entry)


def _progress(entries: list[Entry]) -> Progress:
    return Progress(width=max((len(e.id) for e in entries), default=0))


def _declared(plan: Plan, gpu: str | None, gpus: str | None, entries: list[Entry]) -> list[Entry]:
    """Only the entries of GPU targets a repository has runners for (`--gpus "mi355x local"`, comma or space separated)."""
    if gpus is None:
        return entries
    from rocmci.errors import MatrixError, Problem

    names = [name for name in re.split(r"[\s,]+", gpus) if name]
    unknown = [name for name in names if name not in plan.matrix.targets]
    if unknown or not names:
        known = ", ".join(plan.matrix.targets)
        got = ", ".join(unknown) if unknown else "none"
        raise MatrixError([Problem(str(plan.source), None, "--gpus", f"expected GPU targets of the matrix ({known}), got {got}")])
    if gpu is not None and gpu not in names:
        message = f"target {gpu} is not among the declared GPU targets ({', '.join(names)}): no runner would take its jobs"
        raise MatrixError([Problem(str(plan.source), None, "--gpu", message)])
    return [e for e in entries if e.gpu in names]


@reports_errors
def matrix(file: str | None, gpu: str | None, as_json: bool, gpus: str | None = None, builds: bool = False) -> None:
    plan, entries = _selected(file, gpu, None)
    entries = _declared(plan, gpu, gpus, entries)
    if as_json:
        document = github_build_matrix(entries, plan.staging_repository) if builds else github_matrix(entries)
        print(json.dumps(document, separators=(",", ":"), allow_nan=False))
        return
    rows = [
        (
            e.id,
            e.gpu,
            e.gfx or "cpu",
            e.stack.rocm or "-",
            e.stack.torch.version,
            e.stack.aiter.label,
            e.summary()["aiter_kernels"],
            e.tag.rsplit("-", 1)[-1],
            e.build_id,
            " ".join(e.builder_runs_on),
            " ".join(e.target.runs_on),
        )
        for e in entries
    ]
    headers = ("entry", "gpu", "gfx", "rocm", "torch", "aiter", "kernels", "hash", "build (shared image)", "builds on", "runs on")
    print(table(headers, rows))
    count = len(shared_builds(entries))
    print(f"\n{len(entries)} entries, {count} builds (one per stack and gfx) from {plan.source}")
    print(f"builds stage in {plan.staging_repository}; validated tags and reports go to {plan.release_repository}")


@reports_errors
def base(file: str | None, gpu: str | None) -> None:
    from rocmci import build

    _plan, entries = _selected(file, gpu, None)
    progress = _progress(entries)
    for image in {e.stack.base_image for e in entries if e.stack.base_image.local}:
        build.ensure_local_base(image, progress)


@reports_errors
def wheelhouse(file: str | None, gpu: str | None, entry: str | None, dest: str, torch_index: str) -> None:
    from rocmci import build

    _plan, entries = _selected(file, gpu, entry)
    choice = {"auto": None, "yes": True, "no": False}.get(torch_index)
    if torch_index not in ("auto", "yes", "no"):
        raise build.BuildError(f"--torch-index: expected auto, yes or no (got {torch_index!r})")
    wheels = build.fill_wheelhouse(entries, Path(dest), use_torch_index=choice, progress=_progress(entries))
    print(f"{len(wheels)} wheels in {dest}")


@reports_errors
def build_images(
    file: str | None,
    gpu: str | None,
    entry: str | None,
    push: bool,
    registry: str | None,
    backend: str,
    print_plan: bool,
    ca_cert: str | None,
    bake_ca: bool,
    wheelhouse: str | None,
    registry_cache: bool = False,
    reports_dir: str = "reports",
) -> None:
    """Builds land in the staging repository; with --push each build's record goes to <reports>/builds/."""
    from rocmci import build
    from rocmci.build.record import write_records

    plan, entries = _for_gpu(file, gpu, entry)
    if backend not in ("auto", "sdk", "bake"):
        raise build.BuildError(f"--backend: expected auto, sdk or bake (got {backend!r})")
    options = build.BuildOptions.resolve(
        repository_for(plan, registry, plan.staging_repository),
        backend=backend,
        push=push,
        ca_cert=ca_cert,
        bake_ca=bake_ca,
        wheelhouse=Path(wheelhouse) if wheelhouse else None,
        registry_cache=registry_cache,
    )
    if print_plan:
        print(json.dumps(build.bake_file(entries, options), indent=2, allow_nan=False))
        return
    results = build.build_entries(plan, entries, options, _progress(entries))
    print("\n" + build.summary(results))
    built = sum(r.status == "built" for r in results)
    if built == 0 and all(r.status == "skipped" for r in results):
        print(f"nothing to build: all {len(results)} images exist with their content-hashed tags")
    if push:
        records = [r.record for r in results if r.record is not None]
        failed = [r.build_id for r in results if r.status == "failed"]
        for path in write_records(records, failed, Path(reports_dir)):
            print(f"build record: {path}")
    if any(r.status == "failed" for r in results):
        raise TaskFailed(ExitCode.BUILD_FAILED)


@reports_errors
def validate(
    file: str | None,
    gpu: str | None,
    entry: str | None,
    registry: str | None,
    reports_dir: str,
    pull: bool = False,
    parallel: str | int = 1,
    render_nodes: str | None = None,
) -> None:
    from rocmci import validate as validating

    plan, entries = _for_gpu(file, gpu, entry)
    options = validating.RunOptions(
        repository=repository_for(plan, registry, plan.staging_repository),
        reports_dir=Path(reports_dir),
        parallel=int(_number("--parallel", parallel, int, minimum=1) or 1),
        render_nodes=render_nodes,
    )
    progress = _progress(entries)
    if pull:
        from rocmci.validate.staged import pull_recorded

        options = pull_recorded(entries, options, progress)
    results = validating.validate_entries(plan, entries, options, progress)
    print("\n" + validating.summary(results))
    print("verdicts come from `invoke report`; a finished run is not a pass")
    if any(r.status != "ok" for r in results):
        raise TaskFailed(ExitCode.VALIDATION_FAILED)


@reports_errors
def report(file: str | None, gpu: str | None, reports_dir: str) -> None:
    from rocmci import report as compat

    _plan, entries = _selected(file, gpu, None)
    paths = compat.write_all(Path(reports_dir), [e.summary() for e in entries])
    compat.append_step_summary(paths.compat_md.read_text())
    print(paths.compat_md.read_text())
    counts = paths.report.counts()
    print(
        f"wrote {paths.compat_json}, {paths.compat_md}, {paths.junit_xml}, {paths.index_html} "
        f"and {len(paths.intoto)} in-toto statements"
    )
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@reports_errors
def check_image(
    file: str | None,
    image: str | None,
    gpu: str | None,
    expect_torch: str | None,
    expect_aiter: str | None,
    expect_rocm: str | None,
    reports_dir: str,
    attach: bool,
) -> None:
    """`invoke check --image`: rocmci.check runs it; here the summary and the exit code (0 only for a pass)."""
    from rocmci import check
    from rocmci import report as compat

    if not image:
        raise RocmciError("--image: required: the image reference to check, e.g. ghcr.io/acme/sglang:v0.5")
    plan, _entries = _for_gpu(file, gpu, None)
    request = check.CheckRequest(image, gpu or "", expect_torch, expect_aiter, expect_rocm, Path(reports_dir), attach)
    outcome = check.run_check(plan, request)
    compat.append_step_summary(outcome.paths.compat_md.read_text())
    item = outcome.item
    attached = outcome.attached.reference if outcome.attached else "-"
    print(
        "\n"
        + table(
            ("image", "gpu", "verdict", "checked with", "report attached to"),
            [(image, gpu, item.label, _expected(outcome), attached)],
        )
    )
    for line in item.verdict.reasons + item.verdict.notes:
        print(f"  {line}")
    print(f"reports: {outcome.paths.compat_md}, {outcome.paths.index_html}, {reports_dir}/{item.id}/")
    if not item.verdict.passed:
        raise TaskFailed(1)


def _expected(outcome) -> str:
    given = {k: v for k, v in outcome.entry.expect.as_json().items() if v}
    return ", ".join(f"{k} {v}" for k, v in given.items()) or "no expectations"


def _number(flag: str, text: str | int | float | None, kind: type, minimum: float = 0) -> int | float | None:
    """A numeric flag, or a one-line error naming it."""
    if text is None or text == "":
        return None
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        what = "a whole number" if kind is int else "a number"
        raise InputError(f"{flag}: expected {what} >= {minimum:g} (got {text!r})")
    return value


def _exit_with(code: int) -> None:
    if code:
        raise TaskFailed(code)


@reports_errors
def doctor(
    file: str | None, gpu: str | None, image: str | None, min_free_gb: str | None, as_json: bool, render_nodes: str | None = None
) -> None:
    from rocmci.runner.doctor import doctor_command

    min_free = _number("--min-free-gb", min_free_gb, float)
    if min_free is None:
        min_free = _number("ROCMCI_MIN_FREE_GB", os.environ.get("ROCMCI_MIN_FREE_GB"), float)
    _exit_with(
        doctor_command(gpu=gpu, image=image, matrix_path=file, min_free_gb=min_free, as_json=as_json, render_nodes=render_nodes)
    )


@reports_errors
def clean(keep: str | int | None, stop_timeout: str | None, entry: str | None, dry_run: bool) -> None:
    from rocmci.runner.clean import DEFAULT_KEEP, clean_command

    # tasks.py passes the flag as text (an int default would make invoke convert it, with a traceback on `abc`)
    keep_count = _number("--keep", keep, int)
    if keep_count is None:
        keep_count = DEFAULT_KEEP
    timeout = _number("--stop-timeout", stop_timeout, int)
    if timeout is None:
        timeout = _number("ROCMCI_STOP_TIMEOUT", os.environ.get("ROCMCI_STOP_TIMEOUT"), int)
    _exit_with(clean_command(keep=keep_count, stop_timeout=timeout, dry_run=dry_run, entry=entry))


@reports_errors
def publish(
    file: str | None,
    gpu: str | None,
    entry: str | None,
    registry: str | None,
    reports_dir: str,
    sign: bool = False,
    key: str | None = None,
) -> None:
    from rocmci import publish as publishing

    plan, entries = _for_gpu(file, gpu, entry)
    hooks = _publish_hooks(plan, sign, key)
    items = publishing.publish_items(entries, Path(reports_dir), local_repository=plan.staging_repository)
    _published_summary(publishing.publish(items, repository_for(plan, registry), hooks=hooks))


@reports_errors
def promote(
    file: str | None,
    gpu: str | None,
    entry: str | None,
    registry: str | None,
    reports_dir: str,
    sign: bool = False,
    key: str | None = None,
) -> None:
    """Staging digest (from the build record) -> release repository by blob mount; no engine, no layer bytes."""
    from rocmci.publish.promote import promote as promoting
    from rocmci.publish.promote import promotion_items

    plan, entries = _for_gpu(file, gpu, entry)
    hooks = _publish_hooks(plan, sign, key)
    _published_summary(promoting(promotion_items(entries, Path(reports_dir)), repository_for(plan, registry), hooks=hooks))


def _published_summary(results: list) -> None:
    rows = [(r.entry_id, r.status, r.verdict or "-", _moved(r), r.reference or r.reason) for r in results]
    print("\n" + table(("entry", "status", "verdict", "validated tags moved", "reference"), rows))
    for r in results:
        if r.reason and r.reason.startswith("regression"):
            print(f"{r.entry_id}: {r.reason}")
    if any(not r.ok for r in results):
        raise TaskFailed(ExitCode.PUBLISH_FAILED)


def _moved(result) -> str:
    return ", ".join(result.moved_tags) or f"{result.validated_tag} not moved"


def _publish_hooks(plan: Plan, sign: bool, key: str | None):
    """The regression gate always; cosign signing with --sign (a key, else keyless through the CI's OIDC identity)."""
    from rocmci.attest import AttestError, PublishHooks, Signer
    from rocmci.history import RegressionGate

    if key and not sign:
        raise AttestError("--key: only with --sign")
    return PublishHooks(signer=Signer(key) if sign else None, gate=RegressionGate.from_plan(plan))


@reports_errors
def pull(
    file: str | None,
    gpu: str | None,
    torch: str | None,
    aiter: str | None,
    registry: str | None,
    lock: str | None,
    stack: str | None = None,
    verify: bool = False,
    key: str | None = None,
    identity: str | None = None,
    issuer: str | None = None,
) -> None:
    from rocmci.pull import pull_and_lock

    plan, _entries = _for_gpu(file, gpu, None)
    if stack is not None and stack not in plan.matrix.stacks:
        known = ", ".join(sorted(plan.matrix.stacks))
        raise InputError(f"{plan.source}: --stack: unknown stack {stack!r} (known: {known})")
    repository = repository_for(plan, registry)
    verifier = None
    if verify or key or identity or issuer:
        from rocmci.attest import AttestError, Identity, PullVerifier

        if not verify:
            raise AttestError("--key/--identity/--issuer: only with --verify")
        verifier = PullVerifier(repository, gpu, Identity(key, identity, issuer))
    result, _lock = pull_and_lock(
        repository,
        gpu,
        torch=torch,
        aiter=aiter,
        lock_file=Path(lock) if lock else None,
        verifier=verifier,
        stack=stack,
        build_prefixes=(plan.matrix.targets[gpu].gfx or "cpu",),
    )
    if result.attestation:
        print(f"verified: {result.attestation['predicateType']} {result.attestation['digest']}", file=sys.stderr)
    print(result.reference)


@reports_errors
def history(file: str | None, gpu: str | None, registry: str | None, reports_dir: str, as_json: bool = False) -> None:
    from rocmci import history as hist

    plan, _entries = _for_gpu(file, gpu, None)
    found = hist.collect(repository_for(plan, registry), gpu, log=lambda line: print(line, file=sys.stderr))
    path = hist.write(found, Path(reports_dir))
    if as_json:
        print(json.dumps(found.model_dump(by_alias=True), indent=2))
        return
    print("\n" + table(hist.TABLE_HEADERS, hist.table_rows(found)))
    print("\n" + table(hist.PIN_HEADERS, hist.pin_rows(found)))
    print(f"\n{len(found.rows)} reports on {gpu}; {path} (invoke report adds its plot to index.html)")


def _write_history(repository: str, gpu: str, reports: Path, log: Callable[[str], None]) -> None:
    """The pipeline's history-<gpu>.json for the report's history plot; a registry that cannot be read for it costs
    the plot, never the published results."""
    from rocmci import history as hist

    try:
        hist.write(hist.collect(repository, gpu), reports)
    except RocmciError as exc:
        log(f"no history plot: {exc}")


@reports_errors
def policy(file: str | None, gpu: str | None, output: str | None) -> None:
    from rocmci.attest import admission_policy, predicate_type

    _for_gpu(file, gpu, None)
    text = admission_policy(gpu)
    if output:
        Path(output).write_text(text)
        print(f"{output}: cosign verify-attestation --type {predicate_type(gpu, 'pass')} --policy {output} ...", file=sys.stderr)
    else:
        print(text, end="")


@reports_errors
def pipeline(
    file: str | None,
    gpu: str | None,
    entry: str | None,
    registry: str | None,
    wheelhouse: str | None,
    ca_cert: str | None,
    reports_dir: str,
    publish_images: bool,
) -> None:
    """The main job, per entry: build -> validate -> verdict (judged once) -> publish -> report (rendered once, at the
    end, from the files on disk: validate's results and publish's records), ending with one summary table."""
    from rocmci import build
    from rocmci import publish as publishing
    from rocmci import report as compat
    from rocmci import validate as validating

    plan, entries = _for_gpu(file, gpu, entry)
    repository = repository_for(plan, registry)
    progress = _progress(entries)
    options = build.BuildOptions.resolve(
        plan.staging_repository, ca_cert=ca_cert, wheelhouse=Path(wheelhouse) if wheelhouse else None
    )
    built = {entry_id: r for r in build.build_entries(plan, entries, options, progress) for entry_id in r.entries}
    runnable = [e for e in entries if built[e.id].status != "failed"]
    reports = Path(reports_dir)
    ran = (
        {
            r.entry_id: r
            for r in validating.validate_entries(
                plan, runnable, validating.RunOptions(plan.staging_repository, reports), progress
            )
        }
        if runnable
        else {}
    )
    summaries = [e.summary() for e in entries]
    verdicts = compat.collect(reports, summaries)
    judged = {r.id: r for r in verdicts.entries}
    published = {}
    if publish_images and runnable:
        items = publishing.publish_items(runnable, reports, local_repository=plan.staging_repository)
        hooks = _publish_hooks(plan, sign=False, key=None)  # the regression gate (issue 14)
        published = {
            r.entry_id: r
            for r in publishing.publish(
                items,
                repository,
                documents_for=lambda item, digest, repo, when: compat.documents_of(judged[item.entry_id], digest, repo, when),
                log=lambda line: progress.line("publish", line),
                hooks=hooks,
            )
        }
        _write_history(repository, gpu, reports, lambda line: progress.line("history", line))
    paths = compat.write_all(reports, summaries, judged=verdicts)
    compat.append_step_summary(paths.compat_md.read_text())
    rows = []
    for e in entries:
        pub = published.get(e.id)
        checks = ran[e.id].status if e.id in ran else "-"
        where = (pub.reference or pub.reason) if pub else "-"
        rows.append((e.id, built[e.id].status, checks, judged[e.id].label, where, _moved(pub) if pub else "-"))
    print("\n" + table(("entry", "build", "checks", "verdict", "published", "validated tags moved"), rows))
    print(f"\nreports: {paths.compat_md}, {paths.index_html}")
    if any(built[e.id].status == "failed" for e in entries):
        raise TaskFailed(ExitCode.BUILD_FAILED)
    if any(not r.verdict.passed for r in judged.values()):
        raise TaskFailed(ExitCode.VALIDATION_FAILED)
    if any(not p.ok for p in published.values()):
        raise TaskFailed(ExitCode.PUBLISH_FAILED)


def _build_options(plan: Plan, registry: str | None, ca_cert: str | None, wheelhouse: str | None, backend: str):
    from rocmci import build

    if backend not in ("auto", "sdk", "bake"):
        raise build.BuildError(f"--backend: expected auto, sdk or bake (got {backend!r})")
    return build.BuildOptions.resolve(
        repository_for(plan, registry), backend=backend, ca_cert=ca_cert, wheelhouse=Path(wheelhouse) if wheelhouse else None
    )


@reports_errors
def bisect(
    file: str | None,
    gpu: str,
    stack: str,
    aiter: str | None,
    torch: str | None,
    bad_if: str,
    pre: bool,
    registry: str | None,
    ca_cert: str | None,
    wheelhouse: str | None,
    backend: str,
    reports_dir: str,
    commits: bool = False,
) -> None:
    """The first bad aiter (or torch) pin of a stack between GOOD and BAD; resumes from its log when run again."""
    from rocmci import bisect as bisecting
    from rocmci import report as compat

    if bool(aiter) == bool(torch):
        raise bisecting.BisectError("expected exactly one of --aiter GOOD..BAD and --torch GOOD..BAD")
    axis = "aiter" if aiter else "torch"
    good, bad = bisecting.parse_range(f"--{axis}", aiter or torch or "")
    plan = load_plan(file)
    request = bisecting.BisectRequest(
        gpu, stack, axis, good, bad, bisecting.check_bad_if(bad_if), pre, Path(reports_dir), commits
    )
    options = _build_options(plan, registry, ca_cert, wheelhouse, backend)
    try:
        result = bisecting.run_bisect(plan, request, options)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished steps are in {request.workdir / 'log.jsonl'}; run the same command to resume",
            file=sys.stderr,
        )
        raise TaskFailed(ExitCode.INTERRUPTED) from None
    print("\n" + bisecting.summary_table(result))
    print("\n" + bisecting.headline(result))
    for line in result.changed:
        print(f"  changed: {line}")
    print(
        f"validations: {result.validations} ({result.validations_new} new; at most {result.binary_search_bound} for "
        f"{len(result.candidates)} candidates); report: {request.workdir / 'bisect.md'}"
    )
    compat.append_step_summary(bisecting.render_markdown(result))


@reports_errors
def bump(
    file: str | None,
    gpu: str,
    stack: str | None,
    tries: str | int,
    pre: bool,
    registry: str | None,
    ca_cert: str | None,
    wheelhouse: str | None,
    backend: str,
    out: str,
    canary: str | None = None,
) -> None:
    """Newest passing aiter/torch pins per stack: build, validate, write a matrix.yaml patch and a pull-request body."""
    from rocmci import bump as bumping
    from rocmci import report as compat

    plan = load_plan(file)
    plan.select(gpu)
    options = _build_options(plan, registry, ca_cert, wheelhouse, backend)
    tries_count = int(_number("--tries", tries, int, minimum=1) or 1)
    result = bumping.run_bump(
        plan, gpu, [stack] if stack else [], options, Path(out), tries=tries_count, pre=pre, canary=canary or None
    )
    print("\n" + bumping.summary_table(result))
    print(f"\n{result.proposed} pin(s) proposed; patch: {result.patch_path}; pull-request body: {result.body_path}")
    compat.append_step_summary(Path(result.body_path).read_text())
