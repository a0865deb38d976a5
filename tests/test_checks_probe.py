"""checks/probe.py against the real CPU-only stack (torch 2.13 CPU + amd-aiter) and purpose-built broken environments."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import unavailable

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "checks" / "probe.py"
ENVS = Path(__file__).resolve().parent / "data" / "probe_envs"
SEVERITIES = {"error", "warning", "info", "expected"}


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
    assert set(doc["aiter"]["module_norm"]) == {"prebuilt", "path", "gfx", "targets", "covers", "reader", "bundles"}
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


# -------------------------------------------------------------- module_norm's code objects (real fat binaries)

CODEOBJECTS = Path(__file__).resolve().parent / "data" / "codeobjects"
SID_ROOT = Path(os.environ.get("ROCMCI_SID_ROOT", REPO / ".cache" / "llvm-sid"))
SID_LLVM = "usr/lib/llvm-21"
# fixture -> the target ids its code objects carry (made by scripts/make-codeobject-fixtures, see the README there)
FIXTURES = {
    "gfx942": ["gfx942"],
    "gfx950": ["gfx950"],
    "gfx942_gfx950": ["gfx942", "gfx950"],
    "gfx942_features": ["gfx942:sramecc+:xnack-"],
    "gfx9-4-generic": ["gfx9-4-generic"],
    "gfx942_ccob2": ["gfx942"],
    "gfx950_ccob2": ["gfx950"],
    "gfx942_gfx950_ccob2": ["gfx942", "gfx950"],
    "gfx942_gfx950_ccob3": ["gfx942", "gfx950"],
    "gfx950_ccob3": ["gfx950"],
    "gfx9-4-generic_ccob3": ["gfx9-4-generic"],
    "gfx942_2units": ["gfx942"],
    "gfx942_gfx950_2units": ["gfx942", "gfx950"],
    "gfx942_gfx950_2units_ccob2": ["gfx942", "gfx950"],
    "gfx950_2units_ccob3": ["gfx950"],
}
GENERIC_9_4 = ["gfx940", "gfx941", "gfx942", "gfx950"]


@pytest.fixture(scope="session")
def llvm_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH directory holding only LLVM 21's llvm-objdump and clang-offload-bundler (what a ROCm image has), run
    from the Debian sid tree of scripts/make-codeobject-fixtures through that tree's own loader: no chroot needed.
    Debian 12's LLVM 16 would not do: its llvm-objdump --offloading prints nothing for HIP bundles and its bundler
    prints nothing (exit 0) for a CCOB v2 bundle (checked by hand on these fixtures)."""
    if not (SID_ROOT / SID_LLVM / "bin" / "clang-offload-bundler").is_file():
        script = REPO / "scripts" / "make-codeobject-fixtures"
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            unavailable(f"{SID_ROOT} lacks LLVM 21 and `{script} --tools` needs root and debootstrap to make it")
        env = {**os.environ, "ROCMCI_SID_ROOT": str(SID_ROOT)}
        made = subprocess.run([str(script), "--tools"], env=env, capture_output=True, text=True, timeout=3000, check=False)
        if made.returncode != 0:
            pytest.fail(f"{script} --tools failed:\n{made.stdout[-2000:]}\n{made.stderr[-2000:]}")
    tools = tmp_path_factory.mktemp("llvm-tools")
    libs = ":".join(str(SID_ROOT / d) for d in ("usr/lib/x86_64-linux-gnu", f"{SID_LLVM}/lib"))
    loader = SID_ROOT / "usr" / "lib64" / "ld-linux-x86-64.so.2"
    for name in ("llvm-objdump", "clang-offload-bundler"):
        wrapper = tools / name
        wrapper.write_text(f'#!/bin/sh\nexec "{loader}" --library-path "{libs}" "{SID_ROOT / SID_LLVM / "bin" / name}" "$@"\n')
        wrapper.chmod(0o755)
    version = subprocess.run([str(tools / "clang-offload-bundler"), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and "21." in version.stdout, version.stderr
    return tools


@pytest.fixture(scope="session")
def zstd_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH directory holding only the zstd tool."""
    zstd = shutil.which("zstd")
    if zstd is None:
        unavailable("the zstd tool is not installed (apt-get install zstd)")
    tools = tmp_path_factory.mktemp("zstd-only")
    (tools / "zstd").symlink_to(zstd)
    return tools


def probe_module_norm(so: Path, tool_dir: Path, home: Path, env_dir: Path, gpu: str, expect: str) -> dict[str, Any]:
    """The probe's document for an aiter whose prebuilt module_norm.so is `so`, with only `tool_dir` on PATH."""
    jit = env_dir / "jit"
    jit.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(so, jit / "module_norm.so")
    env = {"PATH": str(tool_dir), "FAKE_GPU_ARCH": gpu, "AITER_JIT_DIR": str(jit)}
    _, doc = run_probe("--expect-gfx", expect, envs=("torch_rocm", "aiter_good"), env=env, home=home)
    return doc


@pytest.mark.parametrize("tools", ["llvm", "zstd-only"])
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_real_fat_binary_is_classified(request: pytest.FixtureRequest, home: Path, tmp_path: Path, name: str, tools: str) -> None:
    tool_dir = request.getfixturevalue("llvm_tools" if tools == "llvm" else "zstd_only")
    expected = FIXTURES[name]
    covers = sorted({p for t in expected for p in (GENERIC_9_4 if t == "gfx9-4-generic" else [t.split(":")[0]])})
    for gfx in ("gfx942", "gfx950"):
        doc = probe_module_norm(CODEOBJECTS / f"{name}.so", tool_dir, home, tmp_path / gfx, f"{gfx}:sramecc+:xnack-", gfx)
        record, found = doc["aiter"]["module_norm"], findings(doc)
        assert "aiter.module_norm.gfx_unknown" not in found, found["aiter.module_norm.gfx_unknown"]["message"]
        assert record["targets"] == expected and record["covers"] == covers
        assert record["gfx"] == sorted({t.split(":")[0] for t in expected})
        if tools == "llvm":
            assert record["reader"] in ("llvm-objdump", "clang-offload-bundler")
        else:
            assert record["reader"] == ("probe (zstd tool)" if "ccob" in name else "probe")
        assert len(record["bundles"]) == (2 if "2units" in name else 1)
        assert all(
            b == ("CCOB v3 zstd" if "ccob3" in name else "CCOB v2 zstd" if "ccob2" in name else "uncompressed")
            for b in record["bundles"]
        )
        wrong = "aiter.module_norm.wrong_gfx" in found
        assert wrong == (gfx not in covers), (gfx, found)
        if wrong:
            assert (
                found["aiter.module_norm.wrong_gfx"]["severity"] == "error"
                and f"GPU_ARCHS={gfx}" in found["aiter.module_norm.wrong_gfx"]["message"]
            )
            assert doc["status"] == "fail" and "aiter.first_call.skipped" in found


def test_llvm_objdump_cannot_read_v3_so_the_bundler_does(home: Path, tmp_path: Path, llvm_tools: Path) -> None:
    """LLVM 21's llvm-objdump --offloading fails on CCOB v3 (and on a section of several compressed bundles):
    the probe goes on to clang-offload-bundler on each bundle of the extracted section."""
    shutil.copyfile(CODEOBJECTS / "gfx950_ccob3.so", tmp_path / "x.so")
    command = [str(llvm_tools / "llvm-objdump"), "--offloading", "x.so"]
    failed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert failed.returncode != 0 and "decompress" in failed.stderr
    listed = subprocess.run(
        [str(llvm_tools / "clang-offload-bundler"), "--list", "--type=o", f"--input={tmp_path / 'x.so'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0 and listed.stdout == ""  # on the linked .so: nothing, and exit 0
    doc = probe_module_norm(
        CODEOBJECTS / "gfx950_ccob3.so", llvm_tools, home, tmp_path / "env", "gfx950:sramecc+:xnack-", "gfx950"
    )
    assert doc["aiter"]["module_norm"]["reader"] == "clang-offload-bundler" and doc["status"] == "pass"


def test_target_features_must_match_the_gpu(home: Path, tmp_path: Path, zstd_only: Path) -> None:
    so = CODEOBJECTS / "gfx942_features.so"  # gfx942:sramecc+:xnack-
    doc = probe_module_norm(so, zstd_only, home, tmp_path / "same", "gfx942:sramecc+:xnack-", "gfx942")
    assert "aiter.module_norm.wrong_gfx" not in findings(doc)
    doc = probe_module_norm(so, zstd_only, home, tmp_path / "other", "gfx942:sramecc-:xnack-", "gfx942")
    message = findings(doc)["aiter.module_norm.wrong_gfx"]["message"]
    assert doc["status"] == "fail" and "gfx942:sramecc-:xnack-" in message and "features" in message


def test_compressed_module_norm_with_no_decompressor_says_why(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    doc = probe_module_norm(CODEOBJECTS / "gfx942_ccob2.so", empty, home, tmp_path / "env", "gfx942:sramecc+:xnack-", "gfx942")
    message = findings(doc)["aiter.module_norm.gfx_unknown"]["message"]
    assert "no llvm-objdump" in message and "no clang-offload-bundler" in message and "nothing here decompresses zstd" in message
    assert doc["aiter"]["module_norm"]["targets"] == [] and doc["aiter"]["module_norm"]["reader"] is None


def hand_made_ccob(plain: bytes, version: int, method: str) -> bytes:
    """A compressed bundle written by hand (clang-21 writes only zstd v2/v3), header per LLVM's OffloadBundler.h."""
    if method == "zlib":
        payload, code = zlib.compress(plain, 9), 0
    else:
        payload, code = subprocess.run(["zstd", "-q", "-c", "-19"], input=plain, capture_output=True, check=True).stdout, 1
    digest = struct.unpack("<Q", hashlib.md5(plain).digest()[:8])[0]
    if version == 1:
        header = b"CCOB" + struct.pack("<HHIQ", 1, code, len(plain), digest)
    elif version == 2:
        header = b"CCOB" + struct.pack("<HHIIQ", 2, code, 24 + len(payload), len(plain), digest)
    else:
        header = b"CCOB" + struct.pack("<HHQQQ", 3, code, 32 + len(payload), len(plain), digest)
    return header + payload


def bundle_end(data: bytes | bytearray, start: int) -> int:
    """Where the uncompressed offload bundle at `start` ends (its entries' offsets are relative to its start)."""
    count = struct.unpack_from("<Q", data, start + 24)[0]
    pos, end = start + 32, start
    for _ in range(count):
        offset, size, id_size = struct.unpack_from("<QQQ", data, pos)
        pos, end = pos + 24 + id_size, max(end, start + offset + size)
    return end


@pytest.mark.parametrize(("version", "method"), [(1, "zlib"), (2, "zlib"), (1, "zstd")])
def test_hand_made_zlib_and_v1_bundles(home: Path, tmp_path: Path, zstd_only: Path, version: int, method: str) -> None:
    """A real .so whose .hip_fatbin bundle is replaced, in place, by a compressed copy (zero padding after it)."""
    data = bytearray((CODEOBJECTS / "gfx942_gfx950.so").read_bytes())
    start = data.index(b"__CLANG_OFFLOAD_BUNDLE__")
    end = bundle_end(data, start)
    packed = hand_made_ccob(bytes(data[start:end]), version, method)
    assert len(packed) < end - start
    data[start:end] = packed + bytes(end - start - len(packed))
    so = tmp_path / "module_norm.so"
    so.write_bytes(bytes(data))
    no_tools = tmp_path / "no-tools"
    no_tools.mkdir()
    for tool_dir in (zstd_only, no_tools):
        doc = probe_module_norm(so, tool_dir, home, tmp_path / tool_dir.name, "gfx950:sramecc+:xnack-", "gfx950")
        record = doc["aiter"]["module_norm"]
        if method == "zstd" and tool_dir is no_tools:
            assert "nothing here decompresses zstd" in findings(doc)["aiter.module_norm.gfx_unknown"]["message"]
            continue
        assert record["targets"] == ["gfx942", "gfx950"] and record["bundles"] == [f"CCOB v{version} {method}"]
        assert record["reader"] == f"probe ({'zlib' if method == 'zlib' else 'zstd tool'})"
        assert doc["status"] == "pass", doc["findings"]


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


def dist_info(env: Path, name: str, version: str) -> None:
    info = env / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_triton_distribution_is_reported(home: Path, tmp_path: Path) -> None:
    rocm = tmp_path / "rocm"
    dist_info(rocm, "pytorch-triton-rocm", "3.5.0+gitabc")
    _, doc = run_probe(envs=("torch_rocm", "aiter_good", rocm), env=GPU_942, home=home)
    assert (doc["versions"]["triton_dist"], doc["versions"]["triton"], doc["versions"]["triton_rocm"]) == (
        "pytorch-triton-rocm",
        "3.5.0+gitabc",
        True,
    )
    both = tmp_path / "both"
    dist_info(both, "pytorch-triton-rocm", "3.5.0")
    dist_info(both, "triton", "3.7.0")
    _, doc = run_probe(envs=("torch_rocm", "aiter_good", both), env=GPU_942, home=home)
    message = findings(doc)["triton.several"]["message"]
    assert "pytorch-triton-rocm 3.5.0" in message and "triton 3.7.0" in message
    _, doc = run_probe(envs=("torch_rocm", "aiter_good"), env=GPU_942, home=home)
    assert doc["versions"]["triton_dist"] is None and doc["versions"]["triton_rocm"] is None


def test_commit_found_in_aiters_version(home: Path) -> None:
    env = {**GPU_942, "FAKE_AITER_VERSION": "0.1.21.dev3+gabc1234d"}
    _, doc = run_probe("--expect-aiter", "abc1234d" + "0" * 32, envs=("torch_rocm", "aiter_good"), env=env, home=home)
    assert doc["versions"]["aiter_commit"] == "abc1234d" and "aiter.version_mismatch" not in findings(doc)


def test_python_314_decompresses_zstd_itself(llvm_tools: Path) -> None:
    """Python 3.14 has compression.zstd: with no tool on PATH, the probe reads zstd bundles itself (sid's python3.14,
    run through the sid tree's loader like the LLVM tools)."""
    loader = SID_ROOT / "usr" / "lib64" / "ld-linux-x86-64.so.2"
    python = SID_ROOT / "usr" / "bin" / "python3"  # 3.14 in sid now
    if not python.is_file():
        unavailable(f"{python} is missing: rerun scripts/make-codeobject-fixtures --tools")
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import probe; from pathlib import Path; "
        "found = [probe.read_code_objects(Path(p)) for p in sys.argv[2:]]; "
        "print(json.dumps([[f.targets, f.reader] for f in found]))"
    )
    files = [str(CODEOBJECTS / f"{name}.so") for name in ("gfx942_gfx950_2units_ccob2", "gfx9-4-generic_ccob3")]
    command = [str(loader), "--library-path", str(SID_ROOT / "usr/lib/x86_64-linux-gnu"), str(python), "-I", "-c", code]
    done = subprocess.run([*command, str(REPO / "checks"), *files], env={"PATH": "/nonexistent"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        [["gfx942", "gfx950"], "probe (compression.zstd)"],
        [["gfx9-4-generic"], "probe (compression.zstd)"],
    ]


def test_a_tool_that_stops_halfway_is_not_taken_at_its_word(
    home: Path, tmp_path: Path, llvm_tools: Path, zstd_only: Path
) -> None:
    """Two bundles, the second a CCOB v3 of gfx950 code: LLVM 21's llvm-objdump lists the first only and exits 0; the
    probe counts the section's bundles, sets that partial answer (gfx942 only) aside and takes the bundler's."""
    data = bytearray((CODEOBJECTS / "gfx942_2units.so").read_bytes())
    second = data.index(b"__CLANG_OFFLOAD_BUNDLE__", data.index(b"__CLANG_OFFLOAD_BUNDLE__") + 1)
    end = bundle_end(data, second)
    gfx950 = (CODEOBJECTS / "gfx950.so").read_bytes()
    first_950 = gfx950.index(b"__CLANG_OFFLOAD_BUNDLE__")
    packed = hand_made_ccob(gfx950[first_950 : bundle_end(gfx950, first_950)], 3, "zstd")
    assert len(packed) < end - second
    data[second:end] = packed + bytes(end - second - len(packed))
    so = tmp_path / "mixed.so"
    so.write_bytes(bytes(data))
    for tool_dir, reader in ((llvm_tools, "clang-offload-bundler"), (zstd_only, "probe (zstd tool)")):
        doc = probe_module_norm(so, tool_dir, home, tmp_path / tool_dir.name, "gfx950:sramecc+:xnack-", "gfx950")
        record = doc["aiter"]["module_norm"]
        assert (record["targets"], record["reader"]) == (["gfx942", "gfx950"], reader)
        assert record["bundles"] == ["uncompressed", "CCOB v3 zstd"] and doc["status"] == "pass", doc["findings"]
