"""Signed attestations (real cosign, the pinned 2.5.0), verified pulls, the admission policy, report history and
the regression gate, against the real local registry (distribution 2.8) and the real Docker engine.

The records published here are written by this test (marked `"test_fixture"`): their figures (k_norm latency,
bandwidth) are chosen numbers, not measurements; what is under test is signing, verification, history and the gate.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import test_registry
import yaml
from test_registry import AUTH_PASSWORD, AUTH_USER, build_image, cleanup_repository, remove_local_images

import rocmci.publish as publishing
import rocmci.pull as pulling
from rocmci import attest, history, oci
from rocmci.attest import AttestError, Identity, PublishHooks, Signer
from rocmci.plan import load_plan
from rocmci.report import write_all
from rocmci.report.plots import HISTORY_METRICS, history_plot
from tests.helpers import unavailable

ROOT = Path(__file__).resolve().parents[1]
KEY_PASSWORD = "rocmci-attest-test"
FIXTURE_MARK = "figures written by tests/test_attest.py, not measured"
pytestmark = [pytest.mark.docker, pytest.mark.registry]
auth_registry = test_registry.auth_registry  # fixtures: a second, htpasswd-protected registry; an empty Docker config
no_docker_config = test_registry.no_docker_config


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def cosign() -> str:
    try:
        return attest.cosign_binary()
    except AttestError as exc:
        unavailable(str(exc))


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    other_private: Path
    other_public: Path


@pytest.fixture(scope="session")
def keys(cosign: str, tmp_path_factory) -> Keys:
    """Two generated cosign key pairs: ours, and a foreign one."""
    out = tmp_path_factory.mktemp("keys")
    env = {**os.environ, "COSIGN_PASSWORD": KEY_PASSWORD}
    for prefix in ("ours", "other"):
        subprocess.run([cosign, "generate-key-pair", "--output-key-prefix", str(out / prefix)], env=env, check=True, cwd=out)
    return Keys(out / "ours.key", out / "ours.pub", out / "other.key", out / "other.pub")


@pytest.fixture(autouse=True)
def key_password(monkeypatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", KEY_PASSWORD)


@pytest.fixture
def repository(registry: str, engine) -> Iterator[str]:
    repo = f"{registry}/rocmci-attest-{uuid.uuid4().hex[:10]}"
    yield repo
    cleanup_repository(repo)
    remove_local_images(engine, repo)


def record(
    digest: str,
    repository: str,
    *,
    gpu: str = "mi355x",
    verdict: str = "pass",
    when: str = "2026-11-01T00:00:00Z",
    graph_us: float | None = 10.0,
    bandwidth_frac: float | None = 0.5,
    pin: str = "rocm7.2-torch2.13.0-aiter0.1.20",
    stack: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compat record and in-toto statement of report.entry_documents' contract, with test-written figures."""
    entry_id = f"{gpu}-{pin}"
    k_norm = {"impl": "aiter-ck", "tokens": 8192, "hidden": 128, "dtype": "bf16", "graph_us": graph_us}
    rec = {
        "test_fixture": FIXTURE_MARK,
        "entry": {"id": entry_id, "gpu": gpu, "torch": "2.13.0", "aiter": "0.1.20"} | ({"stack": stack} if stack else {}),
        "image": {"ref": f"{repository}:{entry_id}", "digest": digest},
        "subject": {"name": repository, "digest": digest},
        "verdict": verdict,
        "scope": "gpu",
        "reasons": [] if verdict == "pass" else ["smoke: aiter-ck k_norm 8192x128 bf16 failed"],
        "k_norm": k_norm | {"bandwidth_frac": bandwidth_frac} if graph_us is not None else None,
        "report_time": when,
    }
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repository, "digest": {"sha256": digest.split(":", 1)[1]}}],
        "predicateType": "https://in-toto.io/attestation/test-result/v0.1",
        "predicate": {"result": "PASSED" if verdict == "pass" else "FAILED", "configuration": []},
    }
    return rec, statement


def publish(
    engine,
    repository: str,
    tmp_path: Path,
    tag: str,
    hooks: PublishHooks | None,
    **fields: Any,
) -> publishing.PublishResult:
    """Build a small image, push it by digest with a test-written report, through publishing.publish."""
    ref = f"{repository}:{tag}-local"
    build_image(engine, ref, f"{tag} {uuid.uuid4()}")
    gpu = fields.get("gpu", "mi355x")
    stack = fields.get("stack")
    item = publishing.PublishItem(entry_id=tag, gpu=gpu, local_ref=ref, tag=tag, entry_dir=tmp_path / tag, stack=stack)
    client, _ = oci.client_for(repository)
    (result,) = publishing.publish(
        [item],
        repository,
        engine=engine,
        client=client,
        documents_for=lambda _item, digest, repo, _report_time: record(digest, repo, **fields),
        log=lambda _line: None,
        hooks=hooks,
    )
    return result


def verify_attestation(cosign: str, reference: str, ptype: str, public: Path, policy: Path | None = None):
    args = [cosign, "verify-attestation", "--key", str(public), "--type", ptype, "--insecure-ignore-tlog=true"]
    return subprocess.run(
        [*args, *(["--policy", str(policy)] if policy else []), reference], capture_output=True, text=True, check=False
    )


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )


# ---------------------------------------------------------------- the arguments rocmci gives cosign (no registry)


def test_predicate_types_name_gpu_and_verdict() -> None:
    assert attest.predicate_type("mi355x", "pass") == "https://rocmci.dev/attestations/compat/v1/mi355x/pass"
    assert attest.predicate_type("mi300x", "fail") == "https://rocmci.dev/attestations/compat/v1/mi300x/fail"
    with pytest.raises(AttestError, match="lowercase"):
        attest.predicate_type("MI355X/../x", "pass")


def test_keyless_and_kms_arguments(tmp_path: Path, monkeypatch) -> None:
    """Keyless signing (GitHub Actions' OIDC) cannot run here: these are the exact arguments rocmci hands cosign."""
    predicate, ref = tmp_path / "p.json", "ghcr.io/acme/rocmci@sha256:" + "a" * 64
    ptype = attest.predicate_type("mi355x", "pass")
    for name in attest.OIDC_TOKEN_SOURCES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AttestError, match="none is here"):  # no ambient OIDC token: no interactive login
        Signer()
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "https://pipelines.actions.githubusercontent.com/token")
    assert Signer().attest_args(ref, predicate, ptype) == ["attest", "--yes", "--type", ptype, "--predicate", str(predicate), ref]
    assert Signer("awskms:///alias/rocmci").attest_args(ref, predicate, ptype)[-4:] == [
        "--key",
        "awskms:///alias/rocmci",
        "--tlog-upload=false",
        ref,
    ]
    keyless = Identity(
        identity="https://github.com/acme/rocmci/.github/workflows/images.yml@refs/heads/main", issuer=attest.GITHUB_ISSUER
    )
    assert keyless.verify_args(ref, ptype) == [
        "verify-attestation",
        "--type",
        ptype,
        "--certificate-identity",
        "https://github.com/acme/rocmci/.github/workflows/images.yml@refs/heads/main",
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
        ref,
    ]
    with pytest.raises(AttestError, match="either --key or --identity"):
        Identity(key="k.pub", identity="x", issuer="y")
    with pytest.raises(AttestError, match="needs --key"):
        Identity(identity="x")
    with pytest.raises(AttestError, match=r"missing\.key: --key: no such key file"):
        Signer(str(tmp_path / "missing.key"))


def test_workflow_grants_id_token_only_to_promote() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yml").read_text())
    granted = {name: (job.get("permissions") or {}).get("id-token") for name, job in workflow["jobs"].items()}
    assert granted.pop("promote") == "write"
    assert set(granted.values()) == {None}
    promote = next(step for step in workflow["jobs"]["promote"]["steps"] if "scripts/ci/promote" in step.get("run", ""))
    assert promote["env"]["SIGN"] == "true"
    assert '"--sign"' in (ROOT / "scripts" / "ci" / "promote").read_text()  # what SIGN turns on


# ---------------------------------------------------------------- signing and verified pulls


def _att_layers(repository: str, digest: str) -> tuple[oci.RegistryClient, str, oci.Manifest]:
    client, name = oci.client_for(repository)
    return client, name, client.get_manifest(name, oci.fallback_tag(digest) + ".att")


def test_signed_publish_verifies_and_pull_verify_takes_it(engine, repository, keys, cosign, tmp_path) -> None:
    result = publish(engine, repository, tmp_path, "mi355x-signed", PublishHooks(Signer(str(keys.private))))
    assert result.status == "published" and result.moved, result
    assert result.attestation == attest.predicate_type("mi355x", "pass")
    verified = verify_attestation(cosign, result.reference, result.attestation, keys.public)
    assert verified.returncode == 0, verified.stderr
    statement = json.loads(base64.b64decode(json.loads(verified.stdout.splitlines()[0])["payload"]))
    assert statement["predicate"]["verdict"] == "pass" and statement["predicate"]["test_fixture"] == FIXTURE_MARK

    lock = tmp_path / "deploy.lock.json"
    pulled = invoke(
        "pull", "--gpu", "mi355x", "--registry", repository, "--verify", "--key", str(keys.public), "--lock", str(lock)
    )
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == result.reference
    locked = json.loads(lock.read_text())
    _, _, att = _att_layers(repository, result.reference.split("@")[1])
    layer_digests = [layer["digest"] for layer in att.json["layers"]]
    assert locked["attestation"]["digest"] in layer_digests
    assert locked["attestation"]["predicateType"] == result.attestation


def _tamper_one_byte(repository: str, digest: str) -> None:
    """Change one byte of the signed predicate inside the stored DSSE envelope (signature left as it was)."""
    client, name, att = _att_layers(repository, digest)
    manifest = att.json
    layer = manifest["layers"][0]
    envelope = json.loads(client.get_blob(name, oci.Descriptor.from_json(layer)))
    payload = base64.b64decode(envelope["payload"])
    assert payload.count(b'"graph_us":10') == 1
    envelope["payload"] = base64.b64encode(payload.replace(b'"graph_us":10', b'"graph_us":19')).decode()
    blob = json.dumps(envelope, separators=(",", ":")).encode()
    uploaded = client.upload_blob(name, blob, layer["mediaType"])
    manifest["layers"][0] = {**layer, "digest": uploaded.digest, "size": uploaded.size}
    client.put_manifest(name, oci.fallback_tag(digest) + ".att", json.dumps(manifest).encode(), att.media_type)


@pytest.mark.parametrize("case", ["unsigned", "other key", "one byte changed"])
def test_pull_verify_refuses(engine, repository, keys, cosign, tmp_path, case) -> None:
    key = keys.other_private if case == "other key" else keys.private
    hooks = None if case == "unsigned" else PublishHooks(Signer(str(key)))
    result = publish(engine, repository, tmp_path, "mi355x-refused", hooks)
    assert result.status == "published" and result.moved, result  # the attached report itself passes
    ptype = attest.predicate_type("mi355x", "pass")
    if case == "one byte changed":
        assert verify_attestation(cosign, result.reference, ptype, keys.public).returncode == 0
        _tamper_one_byte(repository, result.reference.split("@")[1])
    assert verify_attestation(cosign, result.reference, ptype, keys.public).returncode != 0

    unverified = invoke("pull", "--gpu", "mi355x", "--registry", repository)
    assert unverified.returncode == 0 and unverified.stdout.strip() == result.reference  # what --verify guards against
    lock = tmp_path / "refused.lock.json"
    pulled = invoke(
        "pull", "--gpu", "mi355x", "--registry", repository, "--verify", "--key", str(keys.public), "--lock", str(lock)
    )
    assert pulled.returncode != 0
    assert not lock.exists()
    assert "Traceback" not in pulled.stderr
    refusal = [line for line in pulled.stderr.splitlines() if "rejected" in line]
    assert refusal, pulled.stderr
    assert f"no {ptype} attestation signed by key {keys.public}" in refusal[-1]
    expected = {
        "unsigned": "(unsigned: no attestation of that type is attached)",
        "other key": "(1 attached, none verifies: signed by another identity, or changed after signing)",
        "one byte changed": "(1 attached, none verifies: signed by another identity, or changed after signing)",
    }[case]
    assert expected in refusal[-1], refusal[-1]


def test_pull_verify_refuses_a_report_that_is_not_the_signed_one(engine, repository, keys, tmp_path) -> None:
    """A signed pass exists, but the attached report rocmci would act on says something else: refused."""
    signed = publish(engine, repository, tmp_path, "mi355x-swapped", PublishHooks(Signer(str(keys.private))))
    digest = signed.reference.split("@")[1]
    client, name = oci.client_for(repository)
    newer = record(digest, repository, when="2026-11-02T00:00:00Z", graph_us=9.0)
    oci.attach_report(repository, client.head_manifest(name, digest), newer, client=client)
    verifier = attest.PullVerifier(repository, "mi355x", Identity(key=str(keys.public)))
    found, notes = pulling.find_validated(repository, "mi355x", client=client, accept=verifier)
    assert found.report_time == "2026-11-01T00:00:00Z"  # the signed one, not the newer unsigned one
    assert any("none of them is this passing report" in note for note in notes), notes


def test_sign_and_verify_with_registry_credentials_from_the_environment(
    engine,
    auth_registry,
    no_docker_config,
    keys,
    tmp_path,
    monkeypatch,
) -> None:
    """cosign gets ROCMCI_REGISTRY_USER/PASSWORD through a private, temporary Docker config (htpasswd registry)."""
    monkeypatch.setenv(oci.USER_ENV, AUTH_USER)
    monkeypatch.setenv(oci.PASSWORD_ENV, AUTH_PASSWORD)
    repository = f"{auth_registry}/rocmci-attest-{uuid.uuid4().hex[:8]}"
    try:
        result = publish(engine, repository, tmp_path, "mi355x-auth", PublishHooks(Signer(str(keys.private))))
        assert result.status == "published" and result.attestation, result
        verifier = attest.PullVerifier(repository, "mi355x", Identity(key=str(keys.public)))
        found, _ = pulling.find_validated(repository, "mi355x", accept=verifier)
        assert verifier.lock_entry(found.digest)["predicateType"] == result.attestation
        assert not list(no_docker_config.iterdir())  # the user's Docker config was never written
        monkeypatch.setenv(oci.PASSWORD_ENV, "wrong-password")
        with pytest.raises(AttestError, match=r"UNAUTHORIZED|401|unauthorized"):
            attest.verify(result.reference, result.attestation, Identity(key=str(keys.public)))
    finally:
        remove_local_images(engine, repository)


# ---------------------------------------------------------------- admission policy


def test_admission_policy_admits_pass_despite_signed_failures_and_rejects_fail(
    engine, repository, keys, cosign, tmp_path
) -> None:
    hooks = PublishHooks(Signer(str(keys.private)))
    older_fail = publish(engine, repository, tmp_path, "mi355x-admit", hooks, verdict="fail", when="2026-10-01T00:00:00Z")
    digest = older_fail.reference.split("@")[1]
    client, name = oci.client_for(repository)
    subject = client.head_manifest(name, digest)
    for documents in (record(digest, repository, gpu="mi300x", verdict="fail"), record(digest, repository)):
        oci.attach_report(repository, subject, documents, client=client)
        attest.sign_report(older_fail.reference, documents[0], hooks.signer, log=lambda _line: None)
    failing = publish(engine, repository, tmp_path, "mi355x-reject", hooks, verdict="fail")

    policy = tmp_path / "admission-mi355x.cue"
    written = invoke("policy", "--gpu", "mi355x", "--output", str(policy))
    assert written.returncode == 0, written.stderr
    admit = attest.predicate_type("mi355x", "pass")
    # The two signed failing reports are there and verify under their own types ...
    for gpu in ("mi355x", "mi300x"):
        assert verify_attestation(cosign, older_fail.reference, attest.predicate_type(gpu, "fail"), keys.public).returncode == 0
    # ... and cannot block the admission of the passing image for mi355x.
    admitted = verify_attestation(cosign, older_fail.reference, admit, keys.public, policy)
    assert admitted.returncode == 0, admitted.stderr
    rejected = verify_attestation(cosign, failing.reference, admit, keys.public, policy)
    assert rejected.returncode != 0 and "none of the attestations matched the predicate type" in rejected.stderr
    # The same passing image is not admitted for another GPU.
    other = tmp_path / "admission-mi300x.cue"
    other.write_text(attest.admission_policy("mi300x"))
    assert (
        verify_attestation(cosign, older_fail.reference, attest.predicate_type("mi300x", "pass"), keys.public, other).returncode
        != 0
    )


def test_policy_rejects_a_signed_pass_type_whose_predicate_disagrees(engine, repository, keys, cosign, tmp_path) -> None:
    """The policy reads the signed predicate, not only the type: a pass-typed statement saying fail is refused."""
    result = publish(engine, repository, tmp_path, "mi355x-odd", None)
    rec, _ = record(result.reference.split("@")[1], repository, verdict="fail")
    predicate = tmp_path / "odd.json"
    predicate.write_text(json.dumps(rec))
    ptype = attest.predicate_type("mi355x", "pass")
    proc = attest.run_cosign(Signer(str(keys.private)).attest_args(result.reference, predicate, ptype), result.reference)
    assert proc.returncode == 0, proc.stderr
    policy = tmp_path / "p.cue"
    policy.write_text(attest.admission_policy("mi355x"))
    checked = verify_attestation(cosign, result.reference, ptype, keys.public, policy)
    assert checked.returncode != 0 and "predicate.verdict" in checked.stderr


def test_kubernetes_example_embeds_the_same_policy() -> None:
    """The policy-controller example (not run here: no cluster) carries exactly `invoke policy --gpu mi355x`."""
    docs = list(yaml.safe_load_all((ROOT / "docs" / "admission" / "policy-controller.yaml").read_text()))
    policy = next(d for d in docs if d and d.get("kind") == "ClusterImagePolicy")
    authorities = policy["spec"]["authorities"]
    attestations = [a for authority in authorities for a in authority["attestations"]]
    assert {a["predicateType"] for a in attestations} == {attest.predicate_type("mi355x", "pass")}
    assert all(a["policy"]["type"] == "cue" and a["policy"]["data"] == attest.admission_policy("mi355x") for a in attestations)
    keyless = [a["keyless"] for a in authorities if "keyless" in a]
    assert keyless and keyless[0]["identities"][0]["issuer"] == attest.GITHUB_ISSUER


# ---------------------------------------------------------------- history and the regression gate


def test_regression_gate_and_history(engine, repository, tmp_path) -> None:
    gate = history.RegressionGate.from_plan(load_plan())
    assert gate.thresholds["mi355x"] == pytest.approx(0.05)  # matrix.yaml: max_regression_pct: 5
    hooks = PublishHooks(gate=gate)
    # Tags sort the other way round from report time: history must order by report time, never by tag.
    first = publish(engine, repository, tmp_path, "mi355x-z-first", hooks, when="2026-11-01T00:00:00Z", graph_us=10.0)
    assert first.moved, first
    slower = publish(
        engine,
        repository,
        tmp_path,
        "mi355x-y-slower10",
        hooks,
        when="2026-11-02T00:00:00Z",
        graph_us=11.0,
        bandwidth_frac=0.4545,
    )
    assert slower.status == "published" and not slower.moved
    assert "regression: k_norm latency +10.0%; bandwidth -9.1%" in slower.reason
    assert "candidate 11.00 us, 45.5% of peak vs validated 10.00 us, 50.0% of peak, threshold 5.0%" in slower.reason
    client, name = oci.client_for(repository)
    assert client.head_manifest(name, "mi355x-validated").digest == first.reference.split("@")[1]
    attached = oci.newest_passing_report(client, name, slower.reference.split("@")[1], "mi355x")
    assert attached.documents.record["regression"]["threshold_pct"] == 5.0
    assert attached.documents.record["regression"]["latency_change_pct"] == 10.0
    within = publish(
        engine, repository, tmp_path, "mi355x-x-slower2", hooks, when="2026-11-03T00:00:00Z", graph_us=10.2, bandwidth_frac=0.49
    )
    assert within.moved, within
    assert client.head_manifest(name, "mi355x-validated").digest == within.reference.split("@")[1]
    publish(engine, repository, tmp_path, "mi355x-w-failed", hooks, verdict="fail", when="2026-11-04T00:00:00Z", graph_us=None)

    shown = invoke("history", "--gpu", "mi355x", "--registry", repository, "--reports", str(tmp_path / "reports"))
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if line.startswith("2026-")]
    assert [r.split()[0] for r in rows] == [f"2026-11-0{d}T00:00:00Z" for d in (1, 2, 3, 4)]
    assert [r.split()[2:5] for r in rows] == [
        ["pass", "10.00", "50.0%"],
        ["pass", "11.00", "45.5%"],
        ["pass", "10.20", "49.0%"],
        ["fail", "-", "-"],
    ]
    summary = next(line for line in shown.stdout.splitlines() if line.startswith("mi355x-rocm7.2-torch2.13.0-aiter0.1.20  "))
    assert summary.split()[1:3] == ["4", "3"] and summary.split()[5:] == ["fail", "10.00", "->", "10.20", "(+2.0%)"]
    written = history.History.model_validate_json(history.history_path(tmp_path / "reports", "mi355x").read_text())
    assert [row.digest for row in written.rows[:3]] == [r.reference.split("@")[1] for r in (first, slower, within)]
    plots = [history_plot(written, metric) for metric in HISTORY_METRICS]  # report renders what history saved
    assert "".join(plots).count("<circle") == 6 and "mi355x-rocm7.2-torch2.13.0-aiter0.1.20" in "".join(plots)
    write_all(tmp_path / "reports", [])
    page = (tmp_path / "reports" / "index.html").read_text()
    assert "<h2>History on mi355x</h2>" in page and all(plot in page for plot in plots)


def test_regression_gate_compares_within_one_stack(engine, repository, tmp_path) -> None:
    """Another stack's figures are no baseline: a slower stack is promoted to its own tag, then gated against it."""
    hooks = PublishHooks(gate=history.RegressionGate.from_plan(load_plan()))
    fast = publish(engine, repository, tmp_path, "a-fast", hooks, when="2026-11-01T00:00:00Z", graph_us=10.0, stack="torch2.13")
    assert fast.moved_tags == ("mi355x-torch2.13-validated", "mi355x-validated"), fast
    other = dict(when="2026-11-02T00:00:00Z", graph_us=20.0, bandwidth_frac=0.25, pin="rocm7.1-torch2.12.0-aiter0.1.20")
    slow_stack = publish(engine, repository, tmp_path, "b-other", hooks, stack="torch2.12", **other)
    assert slow_stack.moved and "regression" not in slow_stack.reason, slow_stack
    worse = dict(other, when="2026-11-03T00:00:00Z", graph_us=21.5, bandwidth_frac=0.2326)
    gated = publish(engine, repository, tmp_path, "b-worse", hooks, stack="torch2.12", **worse)
    assert not gated.moved and "k_norm latency +7.5%" in gated.reason and "validated 20.00 us" in gated.reason
    client, name = oci.client_for(repository)
    on = {tag: client.head_manifest(name, tag).digest for tag in ("mi355x-torch2.13-validated", "mi355x-torch2.12-validated")}
    assert on == {
        "mi355x-torch2.13-validated": fast.reference.split("@")[1],
        "mi355x-torch2.12-validated": slow_stack.reference.split("@")[1],
    }


def test_regression_gate_figures() -> None:
    gate = history.RegressionGate({"mi355x": 0.05})
    base = history.Figures(graph_us=10.0, bandwidth_frac=0.5)
    _, blocked = gate.compare("mi355x", history.Figures(graph_us=10.0, bandwidth_frac=0.47), base)
    assert blocked and "bandwidth -6.0%" in blocked
    _, blocked = gate.compare("mi355x", None, base)
    assert blocked and "no fused-kernel figures" in blocked
    comparison, blocked = gate.compare("mi355x", history.Figures(graph_us=9.0, bandwidth_frac=0.55), base)
    assert blocked is None and comparison["latency_change_pct"] == -10.0
    assert gate.compare("mi355x", history.Figures(graph_us=9.0), None)[1] is None  # nothing validated to compare with
    with pytest.raises(history.HistoryError, match="no regression threshold"):
        gate.compare("mi999x", base, base)


@pytest.fixture(scope="session")
def cosign3() -> Path:
    """Debian sid's real cosign 3.1.1, unpacked under .cache by scripts/install-cosign (never on PATH)."""
    dest = ROOT / ".cache" / "cosign-3.1.1" / "cosign"
    env = {**os.environ, "COSIGN_VERSION": "3.1.1", "COSIGN_SUITE": "sid", "COSIGN_DEST": str(dest)}
    proc = subprocess.run(["bash", "scripts/install-cosign"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = f"cannot fetch cosign 3.1.1 from Debian sid: {proc.stderr.strip()[-300:]}"
        unavailable(message)
    return dest


def test_cosign_3_is_refused_and_its_attestations_never_pass_for_reports(
    engine, repository, keys, cosign, cosign3, tmp_path, monkeypatch
) -> None:
    """cosign 3.1.1 keeps its attestation in the same `sha256-<hex>` index as rocmci's reports, under an entry that
    says application/vnd.oci.empty.v1+json: rocmci tells the two apart by the manifest, and refuses cosign 3.x."""
    result = publish(engine, repository, tmp_path, "mi355x-cosign3", None)
    digest = result.reference.split("@")[1]
    signing_config = tmp_path / "signing-config.json"  # no Fulcio, Rekor, TSA: offline key signing on 3.x
    no_services = ["--no-default-fulcio", "--no-default-rekor", "--no-default-tsa", "--no-default-oidc"]
    subprocess.run([cosign3, "signing-config", "create", *no_services, "--out", signing_config], check=True, capture_output=True)
    predicate = tmp_path / "predicate.json"
    predicate.write_text(json.dumps(record(digest, repository)[0]))
    ptype = attest.predicate_type("mi355x", "pass")
    attach = [cosign3, "attest", "--yes", "--key", keys.private, "--type", ptype, "--predicate", predicate]
    signed = subprocess.run(
        [*attach, "--signing-config", signing_config, result.reference], capture_output=True, text=True, check=False, timeout=300
    )
    assert signed.returncode == 0, signed.stderr

    client, name = oci.client_for(repository)
    index = client.fallback_index(name, digest)
    assert sorted(str(d.artifact_type) for d in index) == sorted([oci.EMPTY_MEDIA_TYPE, oci.REPORT_ARTIFACT_TYPE])
    bundle = next(d for d in index if d.artifact_type == oci.EMPTY_MEDIA_TYPE)
    assert client.get_manifest(name, bundle.digest).json["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"

    reports, skipped = history.reports_on(client, name, digest)
    assert [r.artifact.digest for r in reports] == [result.report_digest] and not skipped
    # Entries that lie about what they point at change nothing: the manifest decides.
    swapped = [
        oci.Descriptor(d.media_type, d.digest, d.size, None if d.digest == result.report_digest else oci.REPORT_ARTIFACT_TYPE)
        for d in index
    ]
    body = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [d.to_json() for d in swapped]})
    client.put_manifest(name, oci.fallback_tag(digest), body.encode(), oci.OCI_INDEX)
    reports, skipped = history.reports_on(client, name, digest)
    assert [r.artifact.digest for r in reports] == [result.report_digest] and not skipped
    assert [row.report_digest for row in history.collect(repository, "mi355x").rows] == [result.report_digest]

    # The pinned 2.5 does not find what 3.1 attached, and rocmci refuses to run 3.x.
    assert verify_attestation(cosign, result.reference, ptype, keys.public).returncode != 0
    monkeypatch.setenv("ROCMCI_COSIGN", str(cosign3))
    with pytest.raises(AttestError, match=r"is cosign 3\.x; rocmci pins cosign 2\.5\.0"):
        attest.cosign_binary()


MI355X_ENTRY = "mi355x-rocm7.2-torch2.13.0-aiter0.1.20"


def _validated_reports(engine, repository: str, out: Path, slowdown: float, aiter: str = "0.1.20") -> tuple[Path, Path, str]:
    """The hand-written mi355x results of tests/data/reports (invented figures, not measured), re-pointed at a small
    image built here, with the fused k_norm case's latency and bandwidth scaled by `slowdown` (test-written).

    Another `aiter` release makes another entry (another content tag: a content tag never moves to other bytes),
    with a matrix of its own and the documents' aiter versions rewritten to match that pin. Returns the reports
    directory, the matrix file and the entry id."""

    out.mkdir(parents=True)
    matrix = out / "matrix.yaml"
    matrix.write_text((ROOT / "matrix.yaml").read_text().replace("ref: v0.1.20}", f"ref: v{aiter}}}"))
    entry_id = MI355X_ENTRY.replace("aiter0.1.20", f"aiter{aiter}")
    (entry,) = load_plan(matrix).select("mi355x", entry_id)
    entry_dir = out / entry_id
    entry_dir.mkdir()
    for source in (ROOT / "tests" / "data" / "reports" / MI355X_ENTRY).iterdir():
        text = source.read_text().replace(MI355X_ENTRY, entry_id).replace('"0.1.20"', f'"{aiter}"')
        (entry_dir / source.name).write_text(text.replace("aiter@v0.1.20", f"aiter@v{aiter}"))
    local_ref = f"{repository}:local-{uuid.uuid4().hex[:8]}"
    image_id = build_image(engine, local_ref, f"{entry_id} {slowdown} {uuid.uuid4()}")
    result = json.loads((entry_dir / "result.json").read_text())
    result["entry"]["tag"] = entry.tag
    result["image"] = {"ref": local_ref, "id": image_id, "digest": None}
    (entry_dir / "result.json").write_text(json.dumps(result))
    smoke = json.loads((entry_dir / "smoke.json").read_text())
    for case in smoke["cases"]:
        if case["impl"] == "aiter-ck" and case["kind"] == "k_norm" and case["tokens"] == 8192 and case["layout"] == "contiguous":
            case["graph_us"] = round(case["graph_us"] * slowdown, 4)
            case["bandwidth_frac"] = round(case["bandwidth_frac"] / slowdown, 6)
            case["bandwidth_gbs"] = round(case["bandwidth_gbs"] / slowdown, 3)
    (entry_dir / "smoke.json").write_text(json.dumps(smoke))
    return out, matrix, entry_id


def test_cli_publish_sign_gate_and_verified_pull(engine, repository, keys, cosign, tmp_path) -> None:
    """`invoke publish --sign --key` on real (hand-written) result files, the gate in its output, `pull --verify`."""
    first, first_matrix, first_id = _validated_reports(engine, repository, tmp_path / "first", 1.0)
    common = ["--gpu", "mi355x", "--registry", repository, "--sign", "--key", str(keys.private)]
    published = invoke("publish", *common, "--file", str(first_matrix), "--entry", first_id, "--reports", str(first))
    assert published.returncode == 0, published.stdout + published.stderr
    assert f"signed {attest.predicate_type('mi355x', 'pass')}" in published.stdout
    assert "mi355x-validated -> sha256:" in published.stdout

    # The candidate: the next aiter release (a new content tag), 10% slower at the gate shape.
    slower, slower_matrix, slower_id = _validated_reports(engine, repository, tmp_path / "slower", 1.10, aiter="0.1.20.post1")
    refused = invoke("publish", *common, "--file", str(slower_matrix), "--entry", slower_id, "--reports", str(slower))
    assert refused.returncode == 0, refused.stdout + refused.stderr  # published and signed, just not promoted
    line = next(li for li in refused.stdout.splitlines() if li.startswith(f"{slower_id}: regression"))
    assert "k_norm latency +10.0%" in line and "candidate 6.71 us" in line and "validated 6.10 us" in line
    assert "threshold 5.0%" in line

    lock = tmp_path / "lock.json"
    pulled = invoke(
        "pull", "--gpu", "mi355x", "--registry", repository, "--verify", "--key", str(keys.public), "--lock", str(lock)
    )
    assert pulled.returncode == 0, pulled.stderr
    locked = json.loads(lock.read_text())
    # The newest signed pass is the slower one (it passed its gates); the tag stayed on the first.
    assert locked["attestation"]["predicateType"] == attest.predicate_type("mi355x", "pass")
    client, name = oci.client_for(repository)
    assert client.head_manifest(name, "mi355x-validated").digest in published.stdout
