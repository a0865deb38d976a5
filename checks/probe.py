"""Probe an image's torch + aiter install for aiter.layernorm2d_fwd and print one JSON document (rocmci.probe/v1).

Runs inside the image under test, so it imports only the standard library, torch and aiter.
Run it as `python -P checks/probe.py --json ...` so that the working directory cannot shadow aiter.
Exit status: 0 pass, 1 fail, 2 error (bad arguments, or the probe itself broke).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "rocmci.probe/v1"
KFD_PATH = "/dev/kfd"
AITER_DISTS = ("amd-aiter", "aiter")
MODULE_NORM_FILES = ("module_norm.so", "aiter_.so")  # aiter_.so: every core module in one, built by PREBUILD_KERNELS=1
# Offload bundle entry ids: `hipv4-amdgcn-amd-amdhsa--gfx942:sramecc+:xnack-` (kind, triple, empty environment, target id).
TARGET_ID_IN_ENTRY = re.compile(r"amdgcn-amd-amdhsa-[A-Za-z0-9_]*-(gfx[0-9a-z]+(?:-[0-9]+)*(?:-generic)?(?::[A-Za-z0-9_]+[+-])*)")
OFFLOAD_BUNDLE_MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"
CCOB_MAGIC = b"CCOB"  # clang --offload-compress (LLVM's OffloadBundler.h, CompressedOffloadBundle)
BUNDLE_START = re.compile(re.escape(OFFLOAD_BUNDLE_MAGIC) + b"|" + CCOB_MAGIC)
CCOB_METHODS = {0: "zlib", 1: "zstd"}  # llvm::compression::Format
FATBIN_SECTION = ".hip_fatbin"
ROCM_LLVM_DIRS = ("/opt/rocm/llvm/bin", "/opt/rocm/lib/llvm/bin")
TOOL_TIMEOUT_S = 300
# LLVM's AMDGPUUsage, table "AMDGPU Generic Processors": the processors a generic target's code object runs on.
GENERIC_TARGETS = {
    "gfx9-generic": ("gfx900", "gfx902", "gfx904", "gfx906", "gfx909", "gfx90c"),
    "gfx9-4-generic": ("gfx940", "gfx941", "gfx942", "gfx950"),
    "gfx10-1-generic": ("gfx1010", "gfx1011", "gfx1012", "gfx1013"),
    "gfx10-3-generic": ("gfx1030", "gfx1031", "gfx1032", "gfx1033", "gfx1034", "gfx1035", "gfx1036"),
    "gfx11-generic": ("gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151", "gfx1152", "gfx1153"),
    "gfx12-generic": ("gfx1200", "gfx1201"),
}
TRITON_DISTS = ("pytorch-triton-rocm", "triton", "pytorch-triton", "triton-rocm")
EXPECTED_LN_PARAMS = ("input", "weight", "bias", "epsilon", "x_bias")
NO_ROCM_MARKERS = (
    "rocm version file not found",
    "rocm_home",
    "rocm_path",
    "hipconfig",
    "rocminfo",
    "libamdhip64",
    "libhsa-runtime",
    "no hip gpus",
    "hip runtime",
)
SEVERITIES = ("error", "warning", "info", "expected")
VERSION_PIN = re.compile(r"\d+\.\d+")  # a release pin; anything else (a branch, a commit prefix) is a git ref
GIT_HASH_IN_VERSION = re.compile(r"\+g([0-9a-f]{7,40})")


@dataclass
class Finding:
    code: str
    severity: str
    message: str


@dataclass
class Probe:
    """What the probe saw; serialised as the probe.json document."""

    scope: str
    versions: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(
        default_factory=lambda: {"present": False, "count": 0, "gfx": None, "arch_full": None, "name": None}
    )
    aiter: dict[str, Any] = field(
        default_factory=lambda: {
            "path": None,
            "import_ok": False,
            "layernorm2d_fwd": False,
            "signature": None,
            "module_norm": {
                "prebuilt": False,
                "path": None,
                "gfx": [],
                "targets": [],
                "covers": [],
                "reader": None,
                "bundles": [],
            },
        }
    )
    first_call_ms: float | None = None
    aiter_kernel_ran: bool = False
    findings: list[Finding] = field(default_factory=list)

    def add(self, code: str, severity: str, message: str) -> None:
        assert severity in SEVERITIES, severity
        self.findings.append(Finding(code, severity, message))
        print(f"[probe] {severity}: {code}: {message}", file=sys.stderr)

    def status(self) -> str:
        return "fail" if any(f.severity == "error" for f in self.findings) else "pass"

    def document(self, expect: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "status": self.status(),
            "scope": self.scope,
            "versions": self.versions,
            "gpu": self.gpu,
            "aiter": self.aiter,
            "first_call_ms": self.first_call_ms,
            "aiter_kernel_ran": self.aiter_kernel_ran,
            "expect": expect,
            "findings": [asdict(f) for f in self.findings],
        }


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(description=__doc__)
    p.add_argument("--json", action="store_true", help="print the JSON document on stdout (always done; kept for the contract)")
    p.add_argument("--expect-gfx", metavar="GFX", help="the gfx the image was built for, e.g. gfx950")
    p.add_argument("--expect-torch", metavar="V", help="pinned torch version, e.g. 2.13.0")
    p.add_argument(
        "--expect-aiter", metavar="V", help="pinned aiter version, checked against aiter.__version__ and package metadata"
    )
    p.add_argument("--expect-rocm", action="store_true", help="torch must be a ROCm (HIP) build")
    p.add_argument("--expect-rocm-version", metavar="V", help="torch must be built for this ROCm, e.g. 7.2 (torch.version.hip)")
    p.add_argument(
        "--cpu-only", action="store_true", help="CPU-only image: a failed aiter import for lack of ROCm and no GPU are expected"
    )
    p.add_argument(
        "--first-call-slow-ms", type=float, default=5000.0, help="first layernorm2d_fwd call slower than this is reported"
    )
    p.add_argument("--skip-first-call", action="store_true", help="do not call layernorm2d_fwd (no JIT build is triggered)")
    args = p.parse_args(argv)
    if args.cpu_only and (args.expect_rocm or args.expect_gfx or args.expect_rocm_version):
        raise UsageError("--cpu-only contradicts --expect-rocm / --expect-rocm-version / --expect-gfx")
    if args.expect_rocm_version and not re.fullmatch(r"[0-9]+(\.[0-9]+){1,2}", args.expect_rocm_version):
        raise UsageError(f"--expect-rocm-version must look like 7.2, got {args.expect_rocm_version!r}")
    if args.expect_gfx and not re.fullmatch(r"gfx[0-9a-f]+", args.expect_gfx):
        raise UsageError(f"--expect-gfx must look like gfx942, got {args.expect_gfx!r}")
    return args


# ---------------------------------------------------------------- helpers


def version_matches(found: str | None, pinned: str) -> bool:
    """A pin without a local part ('2.13.0') accepts any local build of it ('2.13.0+rocm7.2')."""
    if found is None:
        return False
    return found == pinned if "+" in pinned else found.split("+", 1)[0] == pinned


def exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[int]:
    """Send everything written to fd 1 (C extensions included) to stderr; yields a fd for the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def aiter_distribution() -> importlib.metadata.Distribution | None:
    for name in AITER_DISTS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.distribution(name)
    return None


def static_aiter_version(package_dir: Path) -> str | None:
    """aiter's version read from aiter/_version.py without executing the package (used when the import fails)."""
    try:
        text = (package_dir / "_version.py").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"""__version__\s*=\s*['"]([^'"]+)['"]""", text)
    return match.group(1) if match else None


class UnreadableBundle(Exception):
    """An offload bundle that this reader cannot open; the message says why."""


@dataclass
class CodeObjects:
    """The code objects of a HIP shared object, and how they were read (or why they could not be)."""

    targets: list[str] = field(default_factory=list)  # target ids, e.g. gfx942:sramecc+:xnack-
    reader: str | None = None
    bundles: list[str] = field(default_factory=list)  # how each bundle is stored, e.g. "CCOB v2 zstd"
    notes: list[str] = field(default_factory=list)  # why a reader did not answer
    decompressors: set[str] = field(default_factory=set)  # what the probe's own reader decompressed with


def processor_of(target_id: str) -> str:
    return target_id.split(":", 1)[0]


def covered_processors(target_ids: list[str]) -> list[str]:
    """The processors the code objects run on: each processor named, plus what a generic target covers."""
    covered: set[str] = set()
    for target in target_ids:
        processor = processor_of(target)
        covered.update(GENERIC_TARGETS.get(processor, (processor,)))
    return sorted(covered)


def target_features(target_id: str) -> dict[str, str]:
    """'gfx942:sramecc+:xnack-' -> {'sramecc': '+', 'xnack': '-'}."""
    return {feature[:-1]: feature[-1] for feature in target_id.split(":")[1:] if feature[-1:] in "+-"}


def runs_on(code_object: str, device: str) -> bool:
    """LLVM's isCodeObjectCompatible (OffloadBundler.cpp), with generic targets covering their processors: every
    feature the code object sets must be set the same way on the device; a feature it leaves out means any."""
    if processor_of(device) not in GENERIC_TARGETS.get(processor_of(code_object), (processor_of(code_object),)):
        return False
    wanted, present = target_features(code_object), target_features(device)
    return all(present.get(name) == sign for name, sign in wanted.items())


def elf_section(path: Path, name: str) -> bytes | None:
    """One section of a 64-bit little-endian ELF file, or None when the file is not one or lacks the section."""
    with path.open("rb") as fh:
        ident = fh.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            return None
        (shoff,) = struct.unpack_from("<Q", ident, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ident, 0x3A)
        fh.seek(shoff)
        table = fh.read(shentsize * shnum)
        headers = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(len(table) // shentsize)]
        if shstrndx >= len(headers):
            return None
        fh.seek(headers[shstrndx][4])
        names = fh.read(headers[shstrndx][5])
        for name_offset, _type, _flags, _addr, offset, size in headers:
            if names[name_offset : names.find(b"\0", name_offset)] == name.encode():
                fh.seek(offset)
                return fh.read(size)
    return None


def bundle_entries(data: bytes, start: int) -> tuple[list[str], int]:
    """Entry ids of an uncompressed offload bundle at `start`, and where the bundle ends."""
    try:
        (count,) = struct.unpack_from("<Q", data, start + len(OFFLOAD_BUNDLE_MAGIC))
        if count > 4096:
            raise UnreadableBundle(f"offload bundle at {start} claims {count} entries")
        pos, end, ids = start + len(OFFLOAD_BUNDLE_MAGIC) + 8, start, []
        for _ in range(count):
            offset, size, id_size = struct.unpack_from("<QQQ", data, pos)
            ids.append(data[pos + 24 : pos + 24 + id_size].decode("ascii"))
            pos += 24 + id_size
            end = max(end, start + offset + size)
    except (struct.error, UnicodeDecodeError) as exc:
        raise UnreadableBundle(f"offload bundle at {start} is truncated or corrupt ({exc})") from None
    return ids, max(end, pos)


def ccob_header(data: bytes, start: int) -> tuple[int, str, int | None, int, int]:
    """(version, method, total size or None, uncompressed size, header size) of a compressed offload bundle.
    Layouts from LLVM's OffloadBundler.h: v1 magic, version, method, u32 uncompressed size, u64 hash; v2 adds a
    u32 total size before the uncompressed size; v3 makes both sizes u64."""
    try:
        version, method = struct.unpack_from("<HH", data, start + 4)
        if version == 1:
            total, (uncompressed,), header = None, struct.unpack_from("<I", data, start + 8), 20
        elif version == 2:
            (total, uncompressed), header = struct.unpack_from("<II", data, start + 8), 24
        elif version == 3:
            (total, uncompressed), header = struct.unpack_from("<QQ", data, start + 8), 32
        else:
            raise UnreadableBundle(f"compressed bundle at {start} has format version {version}; this probe reads 1-3")
    except struct.error:
        raise UnreadableBundle(f"compressed bundle header at {start} is truncated") from None
    if method not in CCOB_METHODS:
        raise UnreadableBundle(f"compressed bundle at {start} uses compression method {method} (known: 0 zlib, 1 zstd)")
    return version, CCOB_METHODS[method], total, uncompressed, header


def bundle_spans(section: bytes) -> tuple[list[tuple[int, int]], list[str]]:
    """(start, end) of each offload bundle in a .hip_fatbin section (one per translation unit), and problems met."""
    spans, problems, pos = [], [], 0
    while match := BUNDLE_START.search(section, pos):
        start = match.start()
        try:
            if match.group() == OFFLOAD_BUNDLE_MAGIC:
                end = bundle_entries(section, start)[1]
            else:
                total = ccob_header(section, start)[2]
                following = BUNDLE_START.search(section, start + 4)  # v1 states no size: up to the next bundle
                end = start + total if total else (following.start() if following else len(section))
        except UnreadableBundle as exc:
            problems.append(str(exc))
            pos = start + len(match.group())
            continue
        spans.append((start, min(end, len(section))))
        pos = max(end, start + len(match.group()))
    return spans, problems


def zstd_decompress(payload: bytes, size: int) -> tuple[bytes, str]:
    """zstd through what this Python or host offers: compression.zstd (3.14), the zstandard module, the zstd tool."""
    with contextlib.suppress(ImportError):
        from compression import zstd  # type: ignore[import-not-found]

        return zstd.ZstdDecompressor().decompress(payload, max_length=size), "compression.zstd"
    with contextlib.suppress(ImportError):
        import zstandard  # type: ignore[import-not-found]

        return zstandard.ZstdDecompressor().decompressobj().decompress(payload), "zstandard module"
    tool = shutil.which("zstd")
    if tool is None:
        raise UnreadableBundle(
            "zstd-compressed, and nothing here decompresses zstd (no zstd tool, no zstandard module, Python < 3.14)"
        )
    # A v1 bundle states no size, so padding may follow the frame: zstd then complains after writing all output.
    result = subprocess.run([tool, "-d", "-c", "-q"], input=payload, capture_output=True, timeout=TOOL_TIMEOUT_S, check=False)
    if len(result.stdout) != size:
        raise UnreadableBundle(f"zstd -d failed: {result.stderr.decode(errors='replace').strip()[-200:]}")
    return result.stdout, "zstd tool"


def decompress_ccob(data: bytes, start: int, end: int) -> tuple[bytes, str, str]:
    """(bundle, storage label, decompressor) of the compressed bundle in data[start:end]."""
    version, method, _total, size, header = ccob_header(data, start)
    payload = data[start + header : end]
    if method == "zlib":
        try:
            plain, how = zlib.decompressobj().decompress(payload), "zlib"
        except zlib.error as exc:
            raise UnreadableBundle(f"zlib could not decompress the bundle at {start}: {exc}") from None
    else:
        plain, how = zstd_decompress(payload, size)
    if len(plain) != size:
        raise UnreadableBundle(f"the bundle at {start} decompressed to {len(plain)} bytes; its header says {size}")
    return plain, f"CCOB v{version} {method}", how


def find_llvm_tool(name: str) -> str | None:
    """A tool from PATH, else from where ROCm images keep LLVM."""
    return shutil.which(name) or next((str(Path(d, name)) for d in ROCM_LLVM_DIRS if Path(d, name).is_file()), None)


def run_tool(command: list[str], cwd: str) -> tuple[int, str, str]:
    try:
        result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", exception_text(exc)
    return result.returncode, result.stdout, result.stderr.strip()


def target_ids(text: str) -> list[str]:
    return TARGET_ID_IN_ENTRY.findall(text)


def read_with_objdump(path: Path, section: bytes | None, found: CodeObjects) -> list[str]:
    tool = find_llvm_tool("llvm-objdump")
    if tool is None:
        found.notes.append("no llvm-objdump")
        return []
    with tempfile.TemporaryDirectory(prefix="probe-objdump-") as tmp:
        # --offloading writes each code object beside its input: give it a link in a scratch directory.
        link = Path(tmp, "input.so")
        link.symlink_to(path.resolve())
        code, out, err = run_tool([tool, "--offloading", link.name], tmp)
    ids = target_ids(out)
    listed = len(set(re.findall(rf"{re.escape(link.name)}\.([0-9]+)\.", out)))
    present = len(bundle_spans(section)[0]) if section is not None else listed
    # It stops at the first bundle it cannot read, and LLVM 21's skips a compressed bundle after a plain one (exit 0).
    if code != 0 or not ids or listed < present:
        found.notes.append(
            f"llvm-objdump --offloading listed {listed} of {present} bundles (exit {code}: {err[-200:] or 'no message'})"
        )
        return []
    return ids


def read_with_bundler(path: Path, section: bytes | None, found: CodeObjects) -> list[str]:
    """clang-offload-bundler --list on each bundle of the extracted .hip_fatbin section (on the linked .so itself
    it prints nothing and exits 0, so an empty answer there proves nothing)."""
    tool = find_llvm_tool("clang-offload-bundler")
    if tool is None:
        found.notes.append("no clang-offload-bundler")
        return []
    if section is None:
        found.notes.append(f"clang-offload-bundler: no {FATBIN_SECTION} section to list")
        return []
    ids: list[str] = []
    with tempfile.TemporaryDirectory(prefix="probe-bundler-") as tmp:
        for index, (start, end) in enumerate(bundle_spans(section)[0]):
            bundle = Path(tmp, f"bundle{index}")
            bundle.write_bytes(section[start:end])
            code, out, err = run_tool([tool, "--list", "--type=o", f"--input={bundle}"], tmp)
            if code != 0:
                found.notes.append(f"clang-offload-bundler --list failed on bundle {index}: {err[-200:]}")
                return []
            ids += target_ids(out)
    if not ids:
        found.notes.append("clang-offload-bundler --list found no code object")
    return ids


def read_builtin(path: Path, section: bytes | None, found: CodeObjects) -> list[str]:
    """The bundle headers read here, compressed bundles decompressed with zlib or zstd."""
    data = section if section is not None else path.read_bytes()
    spans, problems = bundle_spans(data)
    found.notes += problems
    ids, decompressors = [], set()
    for start, end in spans:
        try:
            if data.startswith(CCOB_MAGIC, start):
                plain, storage, how = decompress_ccob(data, start, end)
                decompressors.add(how)
                entries = bundle_entries(plain, 0)[0] if plain.startswith(OFFLOAD_BUNDLE_MAGIC) else []
            else:
                storage, entries = "uncompressed", bundle_entries(data, start)[0]
        except UnreadableBundle as exc:
            found.notes.append(str(exc))
            continue
        found.bundles.append(storage)
        ids += target_ids("\n".join(entries))
    if not spans:
        where = f"its {FATBIN_SECTION} section" if section is not None else f"the file (no {FATBIN_SECTION} section)"
        found.notes.append(f"no offload bundle in {where}")
    found.decompressors |= decompressors
    return ids


def read_code_objects(path: Path) -> CodeObjects:
    """The target ids of a HIP shared object's code objects: LLVM's tools first (what a ROCm image has), then the
    bundle headers read here. Plain and compressed (CCOB v1-v3, zlib or zstd) bundles, any number per file."""
    found = CodeObjects()
    section = elf_section(path, FATBIN_SECTION)
    readers = (("llvm-objdump", read_with_objdump), ("clang-offload-bundler", read_with_bundler), ("probe", read_builtin))
    for name, reader in readers:
        ids = reader(path, section, found)
        if ids:
            found.targets, found.reader = sorted(set(ids)), name
            if name != "probe":
                read_builtin_storage(section, found)
            elif found.decompressors:
                found.reader = f"probe ({', '.join(sorted(found.decompressors))})"
            return found
    return found


def read_builtin_storage(section: bytes | None, found: CodeObjects) -> None:
    """How each bundle is stored (for the record), without decompressing."""
    if section is None:
        return
    for start, _end in bundle_spans(section)[0]:
        if section.startswith(CCOB_MAGIC, start):
            with contextlib.suppress(UnreadableBundle):
                version, method = ccob_header(section, start)[:2]
                found.bundles.append(f"CCOB v{version} {method}")
        else:
            found.bundles.append("uncompressed")


def jit_dirs(package_dir: Path | None) -> list[Path]:
    """Where aiter's jit/core.py keeps built modules: $AITER_JIT_DIR (or the older $JIT_WORKSPACE_DIR), else aiter/jit,
    else ~/.aiter/jit when aiter/jit is read-only."""
    dirs = [Path(os.environ[v]) for v in ("AITER_JIT_DIR", "JIT_WORKSPACE_DIR") if os.environ.get(v)]
    if package_dir is not None:
        dirs.append(package_dir / "jit")
    dirs.append(Path.home() / ".aiter" / "jit")
    return dirs


# ---------------------------------------------------------------- torch


def check_torch(probe: Probe, args: argparse.Namespace) -> Any:
    try:
        import torch
    except Exception as exc:  # a torch that cannot load (missing HIP libraries, broken wheel) is a finding too
        if isinstance(exc, ModuleNotFoundError) and exc.name == "torch":
            probe.add(
                "torch.missing",
                "error",
                "torch is not installed in this image: install the pinned torch wheel (for ROCm from https://download.pytorch.org/whl/rocmX.Y).",
            )
        else:
            traceback.print_exc(file=sys.stderr)
            probe.add(
                "torch.import_failed",
                "error",
                f"import torch failed: {exception_text(exc)}. Reinstall the pinned torch wheel; check its ROCm libraries.",
            )
        return None
    probe.versions.update(torch=torch.__version__, torch_hip=torch.version.hip, torch_cuda=torch.version.cuda)
    if args.expect_rocm and torch.version.hip is None:
        build = f"a CUDA build (CUDA {torch.version.cuda})" if torch.version.cuda else "a CPU-only build"
        probe.add(
            "torch.not_rocm",
            "error",
            f"torch {torch.__version__} is {build}, but this image pins ROCm: a later pip install probably replaced the ROCm wheel; "
            "reinstall from https://download.pytorch.org/whl/rocmX.Y and keep PIP_CONSTRAINT pointing at the pinned torch.",
        )
    wanted_rocm = args.expect_rocm_version
    if (
        wanted_rocm
        and torch.version.hip is not None
        and torch.version.hip.split(".")[: wanted_rocm.count(".") + 1] != wanted_rocm.split(".")
    ):
        probe.add(
            "torch.rocm_version_mismatch",
            "error",
            f"torch {torch.__version__} is built for ROCm {torch.version.hip}, expected ROCm {wanted_rocm}: use the torch wheel of that ROCm.",
        )
    elif wanted_rocm and torch.version.hip is None and not args.expect_rocm:
        probe.add("torch.not_rocm", "error", f"torch {torch.__version__} is not a ROCm build, expected ROCm {wanted_rocm}.")
    if args.expect_torch and not version_matches(torch.__version__, args.expect_torch):
        probe.add(
            "torch.version_mismatch",
            "error",
            f"torch is {torch.__version__}, the matrix pins {args.expect_torch}: rebuild the image or fix the pin.",
        )
    return torch


def check_gpu(probe: Probe, torch: Any, args: argparse.Namespace) -> None:
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        props = torch.cuda.get_device_properties(0)
        arch_full = props.gcnArchName if torch.version.hip else f"sm_{props.major}{props.minor}"  # CUDA props echo the name there
        gfx = arch_full.split(":", 1)[0] if arch_full and arch_full.startswith("gfx") else None
        probe.gpu.update(present=True, count=torch.cuda.device_count(), gfx=gfx, arch_full=arch_full, name=props.name)
    if not probe.gpu["present"]:
        if args.cpu_only:
            probe.add("gpu.none", "expected", "no GPU on this CPU-only run (expected): nothing here tested aiter on a GPU.")
        elif not os.path.exists(KFD_PATH):
            probe.add(
                "gpu.none",
                "error",
                f"no GPU visible: {KFD_PATH} is absent. Run the container with --device /dev/kfd --device /dev/dri and --group-add video/render.",
            )
        else:
            probe.add(
                "gpu.none",
                "error",
                f"{KFD_PATH} exists but torch sees no GPU: check the render group (--group-add), HIP_VISIBLE_DEVICES, and that torch is a ROCm build.",
            )
        return
    target = args.expect_gfx
    if target and probe.gpu["gfx"] != target:
        seen = probe.gpu["gfx"] or f"{probe.gpu['name']} ({probe.gpu['arch_full']})"
        probe.add(
            "gpu.gfx_mismatch",
            "error",
            f"the GPU is {seen} but the image targets {target}: run it on a {target} runner or build the image for this GPU.",
        )


# ---------------------------------------------------------------- aiter import


def locate_aiter(probe: Probe) -> tuple[Any, Path | None, bool]:
    """(spec, package dir, shadowed). Detects a namespace package or a copy that is not the installed distribution."""
    try:
        spec = importlib.util.find_spec("aiter")
    except (ImportError, ValueError):
        spec = None
    dist = aiter_distribution()
    probe.versions["aiter_dist"] = dist.version if dist else None
    if spec is None:
        return None, None, False
    if spec.origin in (None, "namespace") or spec.loader is None:
        where = ", ".join(spec.submodule_search_locations or [])
        probe.add(
            "aiter.import.shadowed",
            "error",
            f"'aiter' resolves to a namespace package ({where}): a directory named aiter (e.g. a source checkout in the working "
            "directory) shadows the installed package. Run with python -P, cd elsewhere, or pip install aiter properly.",
        )
        return spec, None, True
    package_dir = Path(spec.origin).resolve().parent
    if dist is not None:
        installed = Path(str(dist.locate_file("aiter/__init__.py"))).resolve()
        if installed.exists() and installed.parent != package_dir:
            probe.add(
                "aiter.import.shadowed",
                "error",
                f"'aiter' resolves to {package_dir}, but {dist.metadata['Name']} {dist.version} is installed at {installed.parent}: "
                "remove or rename the shadowing directory (check PYTHONPATH and the working directory) or run with python -P.",
            )
            return spec, package_dir, True
    return spec, package_dir, False


def classify_import_error(probe: Probe, exc: BaseException, torch: Any, cpu_only: bool) -> None:
    text = exception_text(exc)
    lowered = text.lower()
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] not in ("aiter", "torch"):
        dep = exc.name.split(".")[0]
        probe.add(
            "aiter.import.missing_dependency",
            "error",
            f"import aiter failed: {text}. aiter needs '{dep}' but its package does not declare it "
            f"(amd-aiter 0.1.7.post2.dev18 imports 'packaging' undeclared): add `pip install {dep}` to the image.",
        )
    elif "undefined symbol" in lowered:
        probe.add(
            "aiter.import.abi_mismatch",
            "error",
            f"import aiter failed: {text}. Its compiled modules were built against another torch (C++ ABI mismatch): "
            "rebuild aiter after installing the pinned torch, and keep pip from upgrading torch afterwards.",
        )
    elif any(marker in lowered for marker in NO_ROCM_MARKERS):
        hint = "" if torch is None or torch.version.hip else f" (torch {torch.__version__} is not a ROCm build either)"
        if cpu_only:
            probe.add(
                "aiter.import.no_rocm",
                "expected",
                f"import aiter failed for lack of a ROCm runtime{hint}, as expected in a CPU-only image: {text}. No aiter kernel ran here.",
            )
        else:
            probe.add(
                "aiter.import.no_rocm",
                "error",
                f"import aiter failed: no ROCm runtime{hint}: {text}. Use a ROCm base image (rocm/dev-*) with hipcc, or fix ROCM_PATH.",
            )
    else:
        probe.add("aiter.import.other", "error", f"import aiter failed: {text}. See the traceback on stderr.")


def import_aiter(probe: Probe, torch: Any, args: argparse.Namespace) -> Any:
    spec, package_dir, shadowed = locate_aiter(probe)
    if spec is None:
        dist = probe.versions["aiter_dist"]
        extra = f" (package metadata says amd-aiter {dist} is installed, but no 'aiter' module is importable)" if dist else ""
        probe.add(
            "aiter.missing",
            "error",
            f"aiter is not installed{extra}: install the pinned aiter (pip, git or wheel per the matrix).",
        )
        return None
    probe.aiter["path"] = str(package_dir) if package_dir else None
    if package_dir is not None:
        probe.versions["aiter_import"] = static_aiter_version(package_dir)
        probe.versions["aiter_import_source"] = "file" if probe.versions["aiter_import"] else None
        check_module_norm(probe, package_dir, args)
    if shadowed:
        return None
    try:
        import aiter
    except Exception as exc:  # an import may fail with anything: classify it
        traceback.print_exc(file=sys.stderr)
        classify_import_error(probe, exc, torch, args.cpu_only)
        return None
    if getattr(aiter, "__file__", None) is None:
        probe.add(
            "aiter.import.shadowed",
            "error",
            "import aiter gave a namespace package (aiter.__file__ is None): a directory named aiter shadows the install.",
        )
        return None
    probe.aiter["import_ok"] = True
    version = getattr(aiter, "__version__", None)
    if version:
        probe.versions.update(aiter_import=version, aiter_import_source="module")
    return aiter


def check_aiter_version(probe: Probe, expected: str | None) -> None:
    found = {k: probe.versions.get(k) for k in ("aiter_import", "aiter_dist")}
    known = {k: v for k, v in found.items() if v}
    if len(known) == 2 and not version_matches(known["aiter_import"], known["aiter_dist"].split("+", 1)[0]):
        probe.add(
            "aiter.version_inconsistent",
            "warning",
            f"aiter reports {known['aiter_import']} but its package metadata says {known['aiter_dist']}: a stale or second copy is installed.",
        )
    if not expected:
        return
    if not known:
        probe.add("aiter.version_unknown", "warning", f"cannot read aiter's version to compare with the pin {expected}.")
        return
    if VERSION_PIN.match(expected):
        wrong = {k: v for k, v in known.items() if not version_matches(v, expected)}
    else:
        wrong = git_pin_mismatches(probe, expected, known)
    if wrong:
        seen = ", ".join(f"{k}={v}" for k, v in wrong.items())
        probe.add(
            "aiter.version_mismatch", "error", f"aiter is {seen}, the matrix pins {expected}: rebuild the image or fix the pin."
        )


def report_aiter_commit(probe: Probe) -> None:
    """The commit aiter was built from, as setuptools_scm wrote it into the version ('0.1.21.dev3+g<hash>')."""
    versions = (probe.versions.get(k) or "" for k in ("aiter_import", "aiter_dist"))
    probe.versions["aiter_commit"] = next((m.group(1) for v in versions if (m := GIT_HASH_IN_VERSION.search(v))), None)


def check_triton(probe: Probe) -> None:
    """Which Triton distribution is installed: the torch index's (pytorch-triton-rocm on ROCm) or another one."""
    found = {}
    for name in TRITON_DISTS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    name, version = next(iter(found.items()), (None, None))
    rocm = bool(name and ("rocm" in name or "rocm" in (version or "")))
    probe.versions.update(triton_dist=name, triton=version, triton_rocm=rocm if name else None)
    if len(found) > 1:
        probe.add(
            "triton.several",
            "warning",
            f"several Triton distributions are installed ({', '.join(f'{n} {v}' for n, v in found.items())}): they share "
            "the `triton` package directory, so the last one installed overwrote the others' files.",
        )


def git_pin_mismatches(probe: Probe, ref: str, known: dict[str, str]) -> dict[str, str]:
    """A git pin (commit prefix or branch) checked against the commit in a setuptools-scm version ('0.1.10.dev5+gabc1234')."""
    hashes = {k: m.group(1) for k, v in known.items() if (m := GIT_HASH_IN_VERSION.search(v))}
    if not hashes or not re.fullmatch(r"[0-9a-f]{7,40}", ref):
        seen = ", ".join(known.values())
        probe.add(
            "aiter.version_unverified",
            "info",
            f"aiter is pinned to the git ref {ref!r} and reports {seen}: no commit to compare.",
        )
        return {}
    return {k: known[k] for k, h in hashes.items() if not (ref.startswith(h) or h.startswith(ref))}


# ---------------------------------------------------------------- layernorm2d_fwd


def check_signature(probe: Probe, fn: Any) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        probe.add(
            "aiter.signature.unknown",
            "info",
            "layernorm2d_fwd has no inspectable signature; calls pass (input, weight, bias, epsilon) positionally.",
        )
        return
    probe.aiter["signature"] = f"layernorm2d_fwd{sig}"
    names = tuple(sig.parameters)
    if "eps" in names and "epsilon" not in names:
        probe.add(
            "aiter.signature.eps_legacy",
            "error",
            "layernorm2d_fwd takes `eps` (aiter <= 0.1.4) instead of `epsilon`: callers passing epsilon= raise TypeError; upgrade aiter.",
        )
    elif names[:4] != EXPECTED_LN_PARAMS[:4] or not set(names) <= set(EXPECTED_LN_PARAMS):
        probe.add(
            "aiter.signature.unexpected",
            "error",
            f"layernorm2d_fwd{sig} differs from the expected (input, weight, bias, epsilon=1e-5, x_bias=None): check the aiter pin against sglang's call.",
        )
        return
    optional = [n for n in ("weight", "bias") if n in sig.parameters and sig.parameters[n].default is not inspect.Parameter.empty]
    if optional:
        probe.add(
            "aiter.signature.optional_params",
            "warning",
            f"layernorm2d_fwd has optional {' and '.join(optional)} (aiter before late 2025); newer aiter requires them. sglang passes both, so calls still work.",
        )


def check_module_norm(probe: Probe, package_dir: Path, args: argparse.Namespace) -> None:
    record = probe.aiter["module_norm"]
    candidates = [d / name for d in jit_dirs(package_dir) for name in MODULE_NORM_FILES]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        severity = "info" if args.cpu_only else "warning"
        probe.add(
            "aiter.module_norm.not_prebuilt",
            severity,
            "module_norm is not prebuilt: the first layernorm2d_fwd call will JIT-compile it for minutes (and needs hipcc). "
            "Build the image with PREBUILD_KERNELS=1 GPU_ARCHS=<gfx>.",
        )
        return
    found = read_code_objects(path)
    covers = covered_processors(found.targets)
    record.update(
        prebuilt=True,
        path=str(path),
        gfx=sorted({processor_of(t) for t in found.targets}),
        targets=found.targets,
        covers=covers,
        reader=found.reader,
        bundles=found.bundles,
    )
    target = args.expect_gfx
    if not found.targets:
        probe.add(
            "aiter.module_norm.gfx_unknown",
            "warning",
            f"cannot read the code objects of {path}: {'; '.join(found.notes)}. Install llvm-objdump or clang-offload-bundler "
            "(ROCm's llvm), or the zstd tool, to check its architectures.",
        )
        return
    generic = [t for t in found.targets if processor_of(t) in GENERIC_TARGETS]
    via = f" (generic {', '.join(generic)} covers {', '.join(covers)})" if generic else ""
    if target and target not in covers:
        probe.add(
            "aiter.module_norm.wrong_gfx",
            "error",
            f"{path} holds code for {', '.join(found.targets)}{via} but not {target}: it imports fine and crashes at launch. "
            f"Rebuild with GPU_ARCHS={target}.",
        )
        return
    device = probe.gpu["arch_full"]
    if device and processor_of(device) in covers and not any(runs_on(t, device) for t in found.targets):
        probe.add(
            "aiter.module_norm.wrong_gfx",
            "error",
            f"{path} holds code for {', '.join(found.targets)} but the GPU is {device}: its target features (xnack, sramecc) "
            "do not match, so no code object loads. Rebuild for this GPU's mode (or without feature suffixes).",
        )


def first_call(probe: Probe, torch: Any, aiter: Any, args: argparse.Namespace) -> None:
    """Time the first small bf16 layernorm2d_fwd call: a hidden JIT build or a slow module load shows up here."""
    if any(f.code == "aiter.module_norm.wrong_gfx" for f in probe.findings):
        probe.add(
            "aiter.first_call.skipped", "info", "first call skipped: module_norm lacks the target gfx and would crash the probe."
        )
        return
    x = torch.randn((16, 128), dtype=torch.bfloat16, device="cuda")
    weight = torch.ones((128,), dtype=torch.bfloat16, device="cuda")
    bias = torch.zeros((128,), dtype=torch.bfloat16, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    try:
        aiter.layernorm2d_fwd(x, weight, bias, 1e-5)
        torch.cuda.synchronize()
    except Exception as exc:  # any failure of the call is the finding
        traceback.print_exc(file=sys.stderr)
        probe.add("aiter.first_call.failed", "error", f"layernorm2d_fwd(bf16 16x128) raised {exception_text(exc)}: see stderr.")
        return
    probe.first_call_ms = round((time.perf_counter() - start) * 1e3, 3)
    probe.aiter_kernel_ran = True
    if probe.first_call_ms > args.first_call_slow_ms:
        probe.add(
            "aiter.first_call.slow",
            "warning",
            f"the first layernorm2d_fwd call took {probe.first_call_ms:.0f} ms (limit {args.first_call_slow_ms:.0f} ms): "
            "probably a JIT build at first use; prebuild module_norm in the image (PREBUILD_KERNELS=1).",
        )


# ---------------------------------------------------------------- main


def run_probe(args: argparse.Namespace) -> Probe:
    probe = Probe(scope="cpu-only" if args.cpu_only else "gpu")
    probe.versions.update(
        python=platform.python_version(), torch=None, torch_hip=None, torch_cuda=None, aiter_import=None, aiter_dist=None
    )
    torch = check_torch(probe, args)
    aiter = None
    if torch is not None:
        check_gpu(probe, torch, args)
        aiter = import_aiter(probe, torch, args)
    check_aiter_version(probe, args.expect_aiter)
    report_aiter_commit(probe)
    check_triton(probe)
    if aiter is not None:
        fn = getattr(aiter, "layernorm2d_fwd", None)
        probe.aiter["layernorm2d_fwd"] = fn is not None
        if fn is None:
            probe.add(
                "aiter.symbol.missing",
                "error",
                "aiter imports but has no layernorm2d_fwd (aiter 0.1.12-0.1.14 dropped ops silently when their module failed): use another aiter version.",
            )
        else:
            check_signature(probe, fn)
            if probe.gpu["present"] and torch.version.hip and not args.skip_first_call:
                first_call(probe, torch, aiter, args)
    if args.cpu_only:
        probe.add(
            "probe.cpu_only",
            "expected",
            "CPU-only image: no aiter kernel ran and no GPU was used; this says nothing about aiter on an AMD GPU.",
        )
    return probe


def expectations(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "gfx": args.expect_gfx,
        "torch": args.expect_torch,
        "aiter": args.expect_aiter,
        "rocm": args.expect_rocm,
        "rocm_version": args.expect_rocm_version,
        "cpu_only": args.cpu_only,
    }


def error_document(message: str, argv: list[str]) -> dict[str, Any]:
    """The document printed when the check itself could not run; its scope is what the caller asked for."""
    return {
        "schema": SCHEMA,
        "status": "error",
        "scope": "cpu-only" if "--cpu-only" in argv else "gpu",
        "findings": [{"code": "probe.error", "severity": "error", "message": message}],
    }


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    with stdout_to_stderr() as real_stdout:
        try:
            args = parse_args(arguments)
            probe = run_probe(args)
            doc, code = probe.document(expectations(args)), (0 if probe.status() == "pass" else 1)
        except UsageError as exc:
            doc, code = error_document(f"bad arguments: {exc}", arguments), 2
        except Exception as exc:  # the probe itself broke: report it as status error
            traceback.print_exc(file=sys.stderr)
            doc, code = error_document(f"the probe failed: {exception_text(exc)}", arguments), 2
        with open(real_stdout, "w", closefd=False) as out:
            out.write(json.dumps(doc, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
