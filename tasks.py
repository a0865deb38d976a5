"""rocmci tasks: `invoke --list`. Each task parses its flags and calls one function in rocmci.cli."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from invoke import Exit, Task
from invoke import task as invoke_task


class _Cli:
    """rocmci.cli, imported only when a task runs: `invoke --list` needs none of what it imports (docker, requests,
    pydantic, yaml), so listing the tasks stays fast."""

    def __getattr__(self, name: str) -> Any:
        from rocmci import cli as module

        return getattr(module, name)


cli = _Cli()

# One short flag, one meaning, in every task. invoke would otherwise give each option the first free letter of its
# name, task by task (-r was --reports in one task and --registry in others); every other option is long only.
SHORT_FLAGS = {"gpu": "g", "entry": "e", "file": "f", "registry": "r", "json": "j"}


class _Task(Task):
    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        opts["names"] = [opts["names"][0], *([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])]
        return opts


task = partial(invoke_task, klass=_Task)

FILE = "matrix file (default: matrix.yaml)"
GPU = "GPU target: mi300x, mi325x, mi350x, mi355x or local"
REGISTRY = "registry host or repository (default: the matrix's repository)"


def _call(function: Callable[..., object], **kwargs: object) -> None:
    try:
        function(**kwargs)
    except cli.TaskFailed as failed:
        raise Exit(code=failed.code) from None


@task(
    help={
        "gpu": GPU,
        "file": FILE,
        "json": 'print {"include": [...]} for GitHub Actions\' strategy.matrix',
        "gpus": "only these GPU targets (comma or space separated): the ones this repository has runners for",
        "builds": "with --json: one item per shared build (stack x gfx) instead of one per entry",
    }
)
def matrix(c, gpu=None, file=None, json=False, gpus=None, builds=False):
    """Expand matrix.yaml into entries with deterministic tags and print the plan."""
    _call(cli.matrix, file=file, gpu=gpu, as_json=json, gpus=gpus, builds=builds)


@task(help={"gpu": GPU, "file": FILE})
def base(c, gpu=None, file=None):
    """Make the locally built base images (debootstrap + docker import) the selected stacks need."""
    _call(cli.base, file=file, gpu=gpu)


@task(
    help={
        "gpu": GPU,
        "entry": "one entry id",
        "file": FILE,
        "dest": "wheelhouse directory",
        "torch_index": "ask the stack's torch wheel index: auto (when reachable), yes or no",
    }
)
def wheelhouse(c, gpu=None, entry=None, file=None, dest=".cache/wheelhouse", torch_index="auto"):
    """Download every wheel the selected entries install, for offline (air-gapped) builds."""
    _call(cli.wheelhouse, file=file, gpu=gpu, entry=entry, dest=dest, torch_index=torch_index)


@task(
    help={
        "gpu": GPU,
        "entry": "one entry id",
        "push": "push each build to the staging repository under its content-hashed tag (no validated tag is touched)",
        "registry": "registry host or repository (default: the matrix's staging repository)",
        "backend": "auto (bake where buildx exists, else sdk), sdk or bake",
        "print": "print the bake file, build nothing (ROCMCI_FETCH_URL is set at build time when a CA or wheelhouse is served)",
        "registry_cache": "bake backend: registry cache per target (needs a docker-container buildx builder)",
        "ca_cert": "extra CA bundle for builds: auto (the host's), a path, or none",
        "bake_ca": "keep that CA in the image",
        "wheelhouse": "install from this wheelhouse, offline",
        "reports": "with --push: write each build's record to DIR/builds/<build id>.json",
        "file": FILE,
    }
)
def build(
    c,
    gpu=None,
    entry=None,
    push=False,
    registry=None,
    backend="auto",
    print=False,
    ca_cert="auto",
    bake_ca=False,
    wheelhouse=None,
    registry_cache=False,
    reports="reports",
    file=None,
):
    """Build the images of a GPU target into staging, skipping those whose content-hashed tag exists."""
    _call(
        cli.build_images,
        file=file,
        gpu=gpu,
        entry=entry,
        push=push,
        registry=registry,
        backend=backend,
        print_plan=print,
        ca_cert=ca_cert,
        bake_ca=bake_ca,
        wheelhouse=wheelhouse,
        registry_cache=registry_cache,
        reports_dir=reports,
    )


@task(
    help={
        "gpu": GPU,
        "entry": "one entry id",
        "registry": REGISTRY,
        "reports": "results directory",
        "file": FILE,
        "pull": "pull the image `invoke build --push` recorded (reports/builds/<build id>.json), by digest",
        "parallel": "run up to N entries at once, one GPU each",
        "render_nodes": "the GPUs this job may use, e.g. renderD128,renderD136 (default: env ROCMCI_RENDER_NODES)",
    }
)
def validate(c, gpu=None, entry=None, registry=None, reports="reports", file=None, pull=False, parallel=1, render_nodes=None):
    """Run the probe and the LayerNorm smoke test inside each built image, on the GPUs assigned to this job."""
    _call(
        cli.validate,
        file=file,
        gpu=gpu,
        entry=entry,
        registry=registry,
        reports_dir=reports,
        pull=pull,
        parallel=parallel,
        render_nodes=render_nodes,
    )


@task(
    help={
        "image": "the image to check, e.g. ghcr.io/acme/sglang:v0.5 (rocmci did not build it; it declares no pins)",
        "gpu": GPU,
        "expect_torch": "torch version the image must hold (else the report says what it found, without comparing)",
        "expect_aiter": "aiter version or git commit the image must hold",
        "expect_rocm": "ROCm version torch must be built for, e.g. 7.2 (AMD targets)",
        "reports": "results and reports directory",
        "attach": "attach the report to the image's digest in its registry",
        "file": FILE,
    }
)
def check(
    c,
    image=None,
    gpu=None,
    expect_torch=None,
    expect_aiter=None,
    expect_rocm=None,
    reports="reports/check",
    attach=False,
    file=None,
):
    """Validate an image rocmci did not build: rocmci's probe and smoke test (mounted read-only) on the target's devices."""
    _call(
        cli.check_image,
        file=file,
        image=image,
        gpu=gpu,
        expect_torch=expect_torch,
        expect_aiter=expect_aiter,
        expect_rocm=expect_rocm,
        reports_dir=reports,
        attach=attach,
    )


@task(help={"gpu": GPU, "reports": "results directory", "file": FILE})
def report(c, gpu=None, reports="reports", file=None):
    """Turn validation results into compat.json/.md, junit.xml, index.html and in-toto statements."""
    _call(cli.report, file=file, gpu=gpu, reports_dir=reports)


@task(
    help={
        "gpu": GPU,
        "image": "also check what torch sees inside this image",
        "min_free_gb": "free disk needed",
        "json": "print JSON",
        "file": FILE,
        "render_nodes": "the GPUs this runner's jobs get, e.g. renderD128 (default: env ROCMCI_RENDER_NODES)",
    }
)
def doctor(c, gpu=None, image=None, min_free_gb=None, json=False, file=None, render_nodes=None):
    """Check that this runner can validate: engine, /dev/kfd, render nodes, groups, GPUs, disk."""
    _call(cli.doctor, file=file, gpu=gpu, image=image, min_free_gb=min_free_gb, as_json=json, render_nodes=render_nodes)


@task(
    help={
        "keep": "images to keep per entry (default 2)",
        "stop_timeout": "seconds before a stop becomes a kill",
        "entry": "only this entry's containers and images",
        "dry_run": "say what would go, touch nothing",
    }
)
def clean(c, keep=None, stop_timeout=None, entry=None, dry_run=False):
    """Stop rocmci's GPU containers and prune its old images (label-scoped: nothing it did not create)."""
    _call(cli.clean, keep=keep, stop_timeout=stop_timeout, entry=entry, dry_run=dry_run)


@task(
    help={
        "gpu": GPU,
        "entry": "one entry id",
        "registry": REGISTRY,
        "reports": "results directory",
        "sign": "sign each report as an in-toto attestation with cosign (keyless through the CI's OIDC without --key)",
        "key": "with --sign: cosign key file or KMS reference (awskms://, gcpkms://, azurekms://, hashivault://)",
        "file": FILE,
    }
)
def publish(c, gpu=None, entry=None, registry=None, reports="reports", sign=False, key=None, file=None):
    """Push validated images by digest with reports attached; a pass moves <gpu>-<stack>-validated and <gpu>-validated."""
    _call(cli.publish, file=file, gpu=gpu, entry=entry, registry=registry, reports_dir=reports, sign=sign, key=key)


@task(
    help={
        "gpu": GPU,
        "entry": "one entry id",
        "registry": "release repository (default: the matrix's repository)",
        "reports": "results directory (holds builds/<build_id>.json from build --push and each entry's result)",
        "sign": "sign each report as an in-toto attestation with cosign (keyless through the CI's OIDC without --key)",
        "key": "with --sign: cosign key file or KMS reference",
        "file": FILE,
    }
)
def promote(c, gpu=None, entry=None, registry=None, reports="reports", sign=False, key=None, file=None):
    """Promote validated staging digests to the release repository (blob mount, no engine); a pass moves the validated tags."""
    _call(cli.promote, file=file, gpu=gpu, entry=entry, registry=registry, reports_dir=reports, sign=sign, key=key)


@task(
    help={
        "gpu": GPU,
        "stack": "stack name from matrix.yaml: only images validated with it (default: the newest pass of any stack)",
        "torch": "torch version (prefix)",
        "aiter": "aiter version (prefix)",
        "registry": REGISTRY,
        "lock": "write the chosen digest and pins to this file",
        "verify": "take only images whose passing report is signed (cosign) by --key or --identity/--issuer",
        "key": "with --verify: cosign public key file or KMS reference",
        "identity": "with --verify: keyless signer identity (e.g. the publishing workflow's URL)",
        "issuer": "with --verify: its OIDC issuer (https://token.actions.githubusercontent.com)",
        "file": FILE,
    }
)
def pull(
    c,
    gpu=None,
    stack=None,
    torch=None,
    aiter=None,
    registry=None,
    lock=None,
    verify=False,
    key=None,
    identity=None,
    issuer=None,
    file=None,
):
    """Pull the newest image whose attached report passed on this GPU (and stack), by digest."""
    _call(
        cli.pull,
        file=file,
        gpu=gpu,
        stack=stack,
        torch=torch,
        aiter=aiter,
        registry=registry,
        lock=lock,
        verify=verify,
        key=key,
        identity=identity,
        issuer=issuer,
    )


@task(help={"gpu": GPU, "registry": REGISTRY, "reports": "where history-<gpu>.json goes", "json": "print JSON", "file": FILE})
def history(c, gpu=None, registry=None, reports="reports", json=False, file=None):
    """Every report on this GPU in the registry, in report-time order: verdict and fused-kernel figures per pin."""
    _call(cli.history, file=file, gpu=gpu, registry=registry, reports_dir=reports, as_json=json)


@task(help={"gpu": GPU, "output": "write the policy here (default: stdout)", "file": FILE})
def policy(c, gpu=None, output=None, file=None):
    """The cosign admission policy (CUE) admitting only images a signed rocmci report says passed on this GPU."""
    _call(cli.policy, file=file, gpu=gpu, output=output)


@task(
    help={
        "gpu": GPU,
        "entry": "one entry id",
        "registry": REGISTRY,
        "wheelhouse": "install from this wheelhouse, offline",
        "ca_cert": "extra CA bundle for builds: auto, a path, or none",
        "reports": "results directory",
        "publish": "publish images with their reports (default on)",
        "file": FILE,
    }
)
def pipeline(c, gpu=None, entry=None, registry=None, wheelhouse=None, ca_cert="auto", reports="reports", publish=True, file=None):
    """The main job for a GPU target: build, validate, report, publish; ends with a summary table."""
    _call(
        cli.pipeline,
        file=file,
        gpu=gpu,
        entry=entry,
        registry=registry,
        wheelhouse=wheelhouse,
        ca_cert=ca_cert,
        reports_dir=reports,
        publish_images=publish,
    )


@task(
    help={
        "gpu": GPU,
        "stack": "the stack whose pin is bisected",
        "aiter": "GOOD..BAD aiter pins (versions on the stack's index, or git release tags)",
        "torch": "GOOD..BAD torch versions on the stack's torch index",
        "bad_if": "what is bad: verdict (default), a finding code such as aiter.symbol.missing, or gate:NAME",
        "pre": "also try pre-releases and dev releases between GOOD and BAD",
        "commits": "git pins: every first-parent commit from GOOD to BAD (GOOD and BAD: tags, branches or commits)",
        "registry": REGISTRY,
        "ca_cert": "extra CA bundle for the index and builds: auto, a path, or none",
        "wheelhouse": "install from this wheelhouse, offline (a pypi pin without index: takes its candidates from it)",
        "backend": "auto, sdk or bake",
        "reports": "reports directory (the bisect writes reports/bisect/<gpu>-<stack>-<axis>/)",
        "file": FILE,
    }
)
def bisect(
    c,
    gpu,
    stack,
    aiter=None,
    torch=None,
    bad_if="verdict",
    pre=False,
    registry=None,
    ca_cert="auto",
    wheelhouse=None,
    backend="auto",
    reports="reports",
    commits=False,
    file=None,
):
    """Find the first bad aiter or torch pin of a stack between a good and a bad one (resumes from its log)."""
    _call(
        cli.bisect,
        file=file,
        gpu=gpu,
        stack=stack,
        aiter=aiter,
        torch=torch,
        bad_if=bad_if,
        pre=pre,
        registry=registry,
        ca_cert=ca_cert,
        wheelhouse=wheelhouse,
        backend=backend,
        reports_dir=reports,
        commits=commits,
    )


@task(
    help={
        "gpu": GPU,
        "stack": "one stack (default: every stack of the GPU target)",
        "tries": "aiter releases to try per stack, newest first, until one passes",
        "pre": "also consider pre-releases and dev releases",
        "registry": REGISTRY,
        "ca_cert": "extra CA bundle for the index and builds: auto, a path, or none",
        "wheelhouse": "install from this wheelhouse, offline",
        "backend": "auto, sdk or bake",
        "out": "where matrix.patch, pr-body.md and bump.json go",
        "canary": "try the head of this upstream aiter branch instead of releases (git pins of ROCm/aiter only)",
        "file": FILE,
    }
)
def bump(
    c,
    gpu,
    stack=None,
    tries=3,
    pre=False,
    registry=None,
    ca_cert="auto",
    wheelhouse=None,
    backend="auto",
    out="reports/bump",
    canary=None,
    file=None,
):
    """Propose the newest aiter and torch pins that pass: a matrix.yaml patch and a pull-request body."""
    _call(
        cli.bump,
        file=file,
        gpu=gpu,
        stack=stack,
        tries=tries,
        pre=pre,
        registry=registry,
        ca_cert=ca_cert,
        wheelhouse=wheelhouse,
        backend=backend,
        out=out,
        canary=canary,
    )
