"""checks/probe.py against the real CPU-only stack (torch 2.13 CPU + amd-aiter) and purpose-built broken environments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "checks" / "probe.py"
ENVS = Path(__file__).resolve().parent / "data" / "probe_envs"
SEVERITIES = {"error", "warning", "info", "expected"}


def fake_shared_object(*gfx: str) -> bytes:
    """Bytes shaped like a HIP .so: ELF magic, then offload-bundle entry names for each gfx."""
    entries = b"".join(b"\0hipv4-amdgcn-amd-amdhsa--" + g.encode() + b"\0" for g in gfx)
    return b"\x7fELF" + bytes(256) + b"__CLANG_OFFLOAD_BUNDLE__" + entries + bytes(256)


def run_probe(
    *args: str,
    envs: tuple[str | Path, ...] = (),
    home: Path,
    site: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run the probe as the images do (python -P). Without `site`, -S hides site-packages: only `envs` are importable."""
    paths = [str(e if isinstance(e, Path) else ENVS / e) for e in envs]
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join(paths),
        **(env or {}),
    }
    cmd = [sys.executable, *([] if site else ["-S"]), "-P", str(PROBE), "--json", *args]
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=180, check=False)
    doc = json.loads(proc.stdout)  # exactly one JSON document on stdout; hints go to stderr
    assert_probe_contract(doc)
    return proc.returncode, doc


def assert_probe_contract(doc: dict[str, Any]) -> None:
    assert doc["schema"] == "rocmci.probe/v1"
    assert doc["status"] in {"pass", "fail", "error"}
    for f in doc["findings"]:
        assert set(f) == {"code", "severity", "message"} and f["severity"] in SEVERITIES and f["message"]
    if doc["status"] == "error":
        return
    assert doc["scope"] in {"gpu", "cpu-only"}
    assert set(doc["versions"]) >= {"python", "torch", "torch_hip", "torch_cuda", "aiter_import", "aiter_dist"}
    assert set(doc["gpu"]) == {"present", "count", "gfx", "arch_full", "name"}
    assert isinstance(doc["gpu"]["present"], bool) and isinstance(doc["gpu"]["count"], int)
    assert set(doc["aiter"]) >= {"path", "layernorm2d_fwd", "signature", "module_norm"}
    assert set(doc["aiter"]["module_norm"]) == {"prebuilt", "path", "gfx"}
    assert doc["first_call_ms"] is None or isinstance(doc["first_call_ms"], float)
    has_error = any(f["severity"] == "error" for f in doc["findings"])
    assert doc["status"] == ("fail" if has_error else "pass")


def findings(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {f["code"]: f for f in doc["findings"]}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


GPU_942 = {"FAKE_GPU_ARCH": "gfx942:sramecc+:xnack-"}
GPU_950 = {"FAKE_GPU_ARCH": "gfx950:sramecc+:xnack-"}


# -------------------------------------------------------------- the real CPU-only stack


def test_real_local_image_classifies_no_rocm_as_expected(home: Path) -> None:
    rc, doc = run_probe("--cpu-only", "--expect-torch", "2.13.0", "--expect-aiter", "0.1.7.post2.dev18", site=True, home=home)
    found = findings(doc)
    assert rc == 0 and doc["status"] == "pass" and doc["scope"] == "cpu-only"
    assert found["aiter.import.no_rocm"]["severity"] == "expected"
    assert "ROCm version file not found" in found["aiter.import.no_rocm"]["message"]
    assert found["gpu.none"]["severity"] == "expected"
    assert "no aiter kernel ran" in found["probe.cpu_only"]["message"]
    assert doc["aiter_kernel_ran"] is False and doc["first_call_ms"] is None
    assert doc["versions"]["aiter_dist"] == "0.1.7.post2.dev18" and doc["versions"]["torch_hip"] is None


def test_real_stack_where_rocm_is_pinned_fails(home: Path) -> None:
    rc, doc = run_probe("--expect-rocm", "--expect-torch", "2.12.0", "--expect-aiter", "0.1.7.post2.dev18", site=True, home=home)
    found = findings(doc)
    assert rc == 1 and doc["scope"] == "gpu"
    assert found["aiter.import.no_rocm"]["severity"] == "error"
    assert "CPU-only build" in found["torch.not_rocm"]["message"]
    assert found["torch.version_mismatch"]["severity"] == "error"
    assert found["gpu.none"]["severity"] == "error" and "/dev/kfd" in found["gpu.none"]["message"]
    assert "aiter.version_mismatch" not in found


def test_directory_shadowing_the_installed_aiter(home: Path) -> None:
    rc, doc = run_probe(envs=("aiter_shadow",), site=True, home=home)
    message = findings(doc)["aiter.import.shadowed"]["message"]
    assert rc == 1 and str(ENVS / "aiter_shadow") in message and "amd-aiter" in message


# -------------------------------------------------------------- purpose-built environments

CASES = [
    # (environments, probe arguments, extra environment, finding code, severity, exit status)
    ((), (), {}, "torch.missing", "error", 1),
    (("torch_broken",), (), {}, "torch.import_failed", "error", 1),
    (("torch_cuda",), ("--expect-rocm",), {}, "torch.not_rocm", "error", 1),
    (("torch_rocm",), (), GPU_942, "aiter.missing", "error", 1),
    (("torch_rocm", "aiter_abi"), (), GPU_942, "aiter.import.abi_mismatch", "error", 1),
    (("torch_rocm", "aiter_missing_dep"), (), GPU_942, "aiter.import.missing_dependency", "error", 1),
    (("torch_rocm", "aiter_other"), (), GPU_942, "aiter.import.other", "error", 1),
    (("torch_rocm", "aiter_namespace"), (), GPU_942, "aiter.import.shadowed", "error", 1),
    (("torch_rocm", "aiter_no_symbol"), (), GPU_942, "aiter.symbol.missing", "error", 1),
    (("torch_rocm", "aiter_eps"), (), GPU_942, "aiter.signature.eps_legacy", "error", 1),
    (("torch_rocm", "aiter_optional"), (), GPU_942, "aiter.signature.optional_params", "warning", 0),
    (("torch_rocm", "aiter_unexpected"), (), GPU_942, "aiter.signature.unexpected", "error", 1),
    (("torch_rocm", "aiter_good"), (), {"FAKE_GPU_ARCH": ""}, "gpu.none", "error", 1),
    (("torch_rocm", "aiter_good"), ("--cpu-only",), {"FAKE_GPU_ARCH": ""}, "gpu.none", "expected", 0),
    (("torch_rocm", "aiter_good"), ("--expect-gfx", "gfx950"), GPU_942, "gpu.gfx_mismatch", "error", 1),
    (("torch_rocm", "aiter_good"), ("--expect-gfx", "gfx942"), GPU_942, "aiter.module_norm.not_prebuilt", "warning", 0),
    (("torch_rocm", "aiter_good"), ("--expect-aiter", "0.1.19"), GPU_942, "aiter.version_mismatch", "error", 1),
    (
        ("torch_rocm", "aiter_good"),
        ("--first-call-slow-ms", "50"),
        {**GPU_942, "FAKE_FIRST_CALL_S": "0.2"},
        "aiter.first_call.slow",
        "warning",
        0,
    ),
]


@pytest.mark.parametrize(("envs", "args", "extra", "code", "severity", "rc"), CASES, ids=[f"{c[3]}-{c[4]}" for c in CASES])
def test_broken_environment_gives_its_finding(
    home: Path, envs: tuple[str, ...], args: tuple[str, ...], extra: dict[str, str], code: str, severity: str, rc: int
) -> None:
    got_rc, doc = run_probe(*args, envs=envs, env=extra, home=home)
    found = findings(doc)
    assert code in found, f"{code} not in {sorted(found)}"
    assert found[code]["severity"] == severity
    assert got_rc == rc


def test_import_failures_name_the_fix(home: Path) -> None:
    _, doc = run_probe(envs=("torch_rocm", "aiter_missing_dep"), env=GPU_942, home=home)
    assert "pip install packaging" in findings(doc)["aiter.import.missing_dependency"]["message"]
    _, doc = run_probe("--expect-rocm", envs=("torch_cuda",), home=home)
    assert "CUDA build (CUDA 13.0)" in findings(doc)["torch.not_rocm"]["message"]


def test_sound_gpu_image_passes_and_times_the_first_call(home: Path) -> None:
    rc, doc = run_probe(
        "--expect-gfx", "gfx942", "--expect-aiter", "0.1.20", envs=("torch_rocm", "aiter_good"), env=GPU_942, home=home
    )
    assert rc == 0 and doc["status"] == "pass" and doc["scope"] == "gpu"
    assert doc["gpu"] == {
        "present": True,
        "count": 1,
        "gfx": "gfx942",
        "arch_full": "gfx942:sramecc+:xnack-",
        "name": "AMD Instinct (fake)",
    }
    assert doc["aiter"]["layernorm2d_fwd"] is True and "epsilon" in doc["aiter"]["signature"]
    assert doc["versions"]["aiter_import"] == doc["versions"]["aiter_dist"] == "0.1.20"
    assert isinstance(doc["first_call_ms"], float) and doc["aiter_kernel_ran"] is True


def test_prebuilt_module_norm_for_the_target_gfx(home: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    shutil.copytree(ENVS / "aiter_good", env_dir)
    (env_dir / "aiter" / "jit").mkdir()
    (env_dir / "aiter" / "jit" / "module_norm.so").write_bytes(fake_shared_object("gfx942", "gfx950"))
    rc, doc = run_probe("--expect-gfx", "gfx950", envs=("torch_rocm", env_dir), env=GPU_950, home=home)
    assert rc == 0 and "aiter.module_norm.not_prebuilt" not in findings(doc)
    assert doc["aiter"]["module_norm"] == {
        "prebuilt": True,
        "path": str(env_dir / "aiter" / "jit" / "module_norm.so"),
        "gfx": ["gfx942", "gfx950"],
    }


def test_prebuilt_module_norm_without_the_target_gfx(home: Path, tmp_path: Path) -> None:
    jit = tmp_path / "jit"
    jit.mkdir()
    (jit / "module_norm.so").write_bytes(fake_shared_object("gfx942"))
    rc, doc = run_probe(
        "--expect-gfx", "gfx950", envs=("torch_rocm", "aiter_good"), env={**GPU_950, "AITER_JIT_DIR": str(jit)}, home=home
    )
    found = findings(doc)
    assert rc == 1 and found["aiter.module_norm.wrong_gfx"]["severity"] == "error"
    assert doc["aiter"]["module_norm"]["gfx"] == ["gfx942"]
    assert "aiter.first_call.skipped" in found and doc["first_call_ms"] is None  # the call would crash the probe


def test_module_norm_without_readable_targets(home: Path, tmp_path: Path) -> None:
    jit = tmp_path / "jit"
    jit.mkdir()
    (jit / "module_norm.so").write_bytes(b"\x7fELF" + bytes(1024))
    _, doc = run_probe(envs=("torch_rocm", "aiter_good"), env={**GPU_942, "AITER_JIT_DIR": str(jit)}, home=home)
    assert findings(doc)["aiter.module_norm.gfx_unknown"]["severity"] == "warning"


@pytest.mark.parametrize(
    ("pin", "code", "rc"),
    [("main", "aiter.version_unverified", 0), ("abc1234def56", None, 0), ("0123456789ab", "aiter.version_mismatch", 1)],
)
def test_git_pins_compare_the_commit(home: Path, pin: str, code: str | None, rc: int) -> None:
    env = {**GPU_942, "FAKE_AITER_VERSION": "0.1.10.dev5+gabc1234"}
    got_rc, doc = run_probe("--expect-aiter", pin, envs=("torch_rocm", "aiter_good"), env=env, home=home)
    found = findings(doc)
    assert got_rc == rc and (code is None or code in found)
    assert "aiter.version_mismatch" not in found or code == "aiter.version_mismatch"


@pytest.mark.parametrize("args", [("--expect-gfx", "mi300x"), ("--cpu-only", "--expect-rocm"), ("--no-such-flag",)])
def test_bad_arguments_exit_2_with_a_json_error(home: Path, args: tuple[str, ...]) -> None:
    rc, doc = run_probe(*args, home=home)
    assert rc == 2 and doc["status"] == "error" and doc["findings"][0]["code"] == "probe.error"
