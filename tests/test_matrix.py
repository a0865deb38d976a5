"""rocmci.plan: the bad-matrix corpus, line numbers, deterministic tags, include/exclude, GitHub's matrix."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rocmci.errors import MatrixError, Problem
from rocmci.plan import (
    DEFAULT_MATRIX,
    BuildContext,
    build_args_for,
    content_hash,
    github_build_matrix,
    github_matrix,
    load_plan,
    main,
    parse_matrix,
)
from tests.helpers import require_module

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "data" / "bad_matrices"
BAD_FILES = sorted(CORPUS.glob("*.yaml"))
AMD_TARGETS = {"mi300x": "gfx942", "mi325x": "gfx942", "mi350x": "gfx950", "mi355x": "gfx950"}
ID_RE = re.compile(r"[a-z0-9]+-(rocm[0-9]+\.[0-9]+|cpu)-torch[0-9]+\.[0-9]+\.[0-9]+-aiter[A-Za-z0-9_.-]+")
DOCKER_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def expected_lines(path: Path) -> list[str]:
    return path.with_suffix(".expected").read_text().splitlines()


def shipped() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_MATRIX.read_text())


def write_matrix(directory: Path, document: dict[str, Any], name: str = "matrix.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def context_root(tmp_path: Path) -> Path:
    """A private copy of images/ and checks/: tags computed against it cannot change under the test's feet."""
    root = tmp_path / "ctx"
    for directory in ("images", "checks"):
        if (REPO / directory).is_dir():
            shutil.copytree(REPO / directory, root / directory, ignore=shutil.ignore_patterns("__pycache__"))
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "images" / "Dockerfile").touch()
    (root / "checks" / "probe.py").touch()
    return root


def tags_by_pair(path: Path, context_root: Path) -> dict[tuple[str, str], str]:
    return {(e.gpu, e.stack_name): e.tag for e in load_plan(path, context_root=context_root).entries}


def problems_of(text: str, source: str = "m.yaml") -> list[str]:
    with pytest.raises(MatrixError) as info:
        parse_matrix(text, source)
    return [str(problem) for problem in info.value.problems]


# ---------------------------------------------------------------- the bad-matrix corpus


def test_corpus_has_35_files_each_with_its_expected_error() -> None:
    assert len(BAD_FILES) >= 35
    assert {p.stem for p in CORPUS.glob("*.expected")} == {p.stem for p in BAD_FILES}


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda path: path.stem)
def test_bad_matrix_gives_its_expected_lines(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)
    with pytest.raises(MatrixError) as info:
        load_plan(path.name)
    lines = [str(problem) for problem in info.value.problems]
    assert lines == expected_lines(path)
    for line in lines:
        assert re.match(rf"{re.escape(path.name)}:[0-9]+: \S", line), line
        assert "expected" in line, line
    assert str(info.value) == "\n".join(lines)


def test_cli_prints_every_corpus_error_and_exits_2_without_traceback() -> None:
    names = [path.name for path in BAD_FILES]
    done = subprocess.run(
        [sys.executable, "-m", "rocmci.plan", *names],
        cwd=CORPUS,
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [line for path in BAD_FILES for line in expected_lines(path)]


def test_cli_prints_the_shipped_plan() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rocmci.plan", str(DEFAULT_MATRIX)],
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [tag[:-13] for tag in done.stdout.split()] == [entry.build_id for entry in load_plan(DEFAULT_MATRIX).entries]


def test_main_handles_missing_file_and_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'nope.yaml'}: cannot read the matrix file:")
    assert main(["--help"]) == 2
    assert main([]) == 0


@pytest.mark.parametrize("seed", range(4))
def test_mangled_matrices_never_raise_anything_but_matrix_error(seed: int) -> None:
    """Random line drops, duplications, re-indents and character swaps: a MatrixError with file:line, or a plan."""
    rng = random.Random(seed)
    original = DEFAULT_MATRIX.read_text().splitlines()
    for _ in range(60):
        lines = list(original)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(lines))
            choice = rng.randrange(5)
            if choice == 0:
                del lines[i]
            elif choice == 1:
                lines.insert(i, lines[i])
            elif choice == 2:
                lines[i] = " " + lines[i]
            elif choice == 3 and lines[i]:
                j = rng.randrange(len(lines[i]))
                lines[i] = lines[i][:j] + rng.choice("[]{}:,-&*!#'\"\t 0xq") + lines[i][j + 1 :]
            else:
                lines[i] = lines[i].replace(": ", ": [", 1)
        try:
            parse_matrix("\n".join(lines), "fuzz.yaml")
        except MatrixError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert re.match(r"fuzz\.yaml:[0-9]+: \S", str(problem)), str(problem)


# ---------------------------------------------------------------- line numbers


def test_lines_point_at_the_offending_key_not_its_parent() -> None:
    text = "version: 1\ntargets:\n  local:\n    kind: cpu\n    runs_on: [x]\n    device_policy:\n      shm_size: 1z\n"
    text += "stacks: {}\nmatrix: {}\n"
    assert problems_of(text) == [
        "m.yaml:7: targets.local.device_policy.shm_size: expected a /dev/shm size such as 16g or 512m (got '1z')",
        "m.yaml:8: stacks: expected at least 1 item (got an empty mapping)",
    ]


def test_merge_keys_report_the_line_of_the_value_yaml_keeps() -> None:
    """Own keys beat `<<` merged ones; between merge sources PyYAML 6.0.3 keeps the earlier and 6.0.4 the later:
    whichever value the loader kept, the line is the one that value is written on."""
    text = """\
version: 1
first: &a {hbm_gb: many, peak_bandwidth_tbs: slow}
second: &b {hbm_gb: lots, compute_units: few}
targets:
  local:
    <<: [*a, *b]
    kind: cpu
    peak_bandwidth_tbs: 5.3
    runs_on: [ubuntu-latest]
"""
    kept = yaml.safe_load(text)["targets"]["local"]["hbm_gb"]
    assert [line for line in problems_of(text) if ".local." in line] == [
        f"m.yaml:{2 if kept == 'many' else 3}: targets.local.hbm_gb: expected the HBM size in GB, a whole number such as 192 (got {kept!r})",
        "m.yaml:3: targets.local.compute_units: expected the number of compute units, such as 304 (got 'few')",
    ]


def test_unknown_key_inside_an_alias_is_reported_for_each_user_at_the_anchor() -> None:
    text = """\
version: 1
targets:
  a: {kind: cpu, runs_on: [x], device_policy: &p {devise: [/dev/kfd]}}
  b: {kind: cpu, runs_on: [x], device_policy: *p}
"""
    found = [line for line in problems_of(text) if "devise" in line]
    assert [line.split(": unknown key")[0] for line in found] == [
        "m.yaml:3: targets.a.device_policy.devise",
        "m.yaml:3: targets.b.device_policy.devise",
    ]


def test_problems_list_every_semantic_error_in_file_order() -> None:
    document = shipped()
    document["stacks"]["rocm7.2-torch2.13"]["torch"]["version"] = "2.9.0"
    document["targets"]["mi300x"]["gfx"] = "gfx1100"
    document["matrix"]["gpu"].append("mi400x")
    lines = problems_of(yaml.safe_dump(document, sort_keys=False))
    assert len(lines) == 3
    numbers = [int(line.split(":")[1]) for line in lines]
    assert numbers == sorted(numbers)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(MatrixError, match="cannot read the matrix file"):
        load_plan(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_bytes(b"version: 1\n\xff\n")
    with pytest.raises(MatrixError) as info:
        load_plan(tmp_path / "bad.yaml")
    assert info.value.problems == [Problem(str(tmp_path / "bad.yaml"), 2, "", "expected UTF-8 text (got byte 0xff)")]


# ---------------------------------------------------------------- ids, tags, GitHub's matrix


def test_shipped_ids_and_tags_are_well_formed() -> None:
    entries = load_plan(DEFAULT_MATRIX).entries
    ids = [entry.id for entry in entries]
    assert "mi355x-rocm7.2-torch2.13.0-aiter0.1.20" in ids
    assert "local-cpu-torch2.13.0-aiter0.1.7.post2.dev18" in ids
    assert len(set(ids)) == len(ids)
    for entry in entries:
        assert ID_RE.fullmatch(entry.id), entry.id
        assert DOCKER_TAG_RE.fullmatch(entry.tag) and len(entry.tag) <= 128, entry.tag
        assert entry.tag == f"{entry.build_id}-{entry.content_hash[:12]}"
        assert entry.labels["io.rocmci.content-hash"] == entry.content_hash
        assert entry.image_ref("127.0.0.1:5000/rocmci") == f"127.0.0.1:5000/rocmci:{entry.tag}"


def test_github_matrix_has_every_amd_target_and_local() -> None:
    plan = load_plan(DEFAULT_MATRIX)
    document = json.loads(json.dumps(github_matrix(plan.entries)))
    items = document["include"]
    assert set(document) == {"include"}
    assert {item["gpu"] for item in items} == {*AMD_TARGETS, "local"}
    for item in items:
        assert {"id", "gpu", "gfx", "tag", "runs_on"} <= set(item)
        assert item["gfx"] == AMD_TARGETS.get(item["gpu"])
        assert item["runs_on"] and all(isinstance(label, str) for label in item["runs_on"])
    local = next(item for item in items if item["gpu"] == "local")
    assert local["kind"] == "cpu" and local["runs_on"] == ["ubuntu-latest"] and local["rocm"] is None
    assert github_matrix(plan.select(gpu="mi355x"))["include"][0]["runs_on"] == ["self-hosted", "linux", "mi355x"]


# ---------------------------------------------------------------- one image per stack and gfx


def test_gpu_models_of_one_gfx_share_one_build_per_stack(context_root: Path) -> None:
    plan = load_plan(DEFAULT_MATRIX, context_root=context_root)
    by_pair = {(e.gpu, e.stack_name): e for e in plan.entries}
    for stack in ("rocm7.1-torch2.12", "rocm7.2-torch2.13"):
        for first, second in (("mi300x", "mi325x"), ("mi350x", "mi355x")):
            a, b = by_pair[(first, stack)], by_pair[(second, stack)]
            assert a.id != b.id and a.validated_tag != b.validated_tag
            assert (a.tag, a.content_hash, a.build_args, a.labels) == (b.tag, b.content_hash, b.build_args, b.labels)
            assert a.tag.startswith(f"{a.gfx}-rocm")
        assert by_pair[("mi300x", stack)].tag != by_pair[("mi355x", stack)].tag  # another gfx, another image
    assert by_pair[("mi300x", "rocm7.1-torch2.12")].tag != by_pair[("mi300x", "rocm7.2-torch2.13")].tag
    # No GPU model in what is hashed or labelled: the image is the stack's build for a gfx.
    for entry in plan.entries:
        assert not any(entry.gpu in value for value in (*entry.build_args.values(), *entry.labels.values())), entry.id
        assert entry.validated_tag == f"{entry.gpu}-{entry.stack_name}-validated"
        assert DOCKER_TAG_RE.fullmatch(entry.validated_tag)


def test_renaming_a_gpu_model_keeps_the_content_hash(tmp_path: Path, context_root: Path) -> None:
    before = tags_by_pair(DEFAULT_MATRIX, context_root)
    document = shipped()
    document["targets"]["mi355x-oam"] = document["targets"].pop("mi355x")
    document["matrix"]["gpu"] = [g if g != "mi355x" else "mi355x-oam" for g in document["matrix"]["gpu"]]
    after = tags_by_pair(write_matrix(tmp_path, document), context_root)
    assert after[("mi355x-oam", "rocm7.2-torch2.13")] == before[("mi355x", "rocm7.2-torch2.13")]
    # The gfx is what goes into the image: a model moved to another gfx gets another build.
    document["targets"]["mi355x-oam"]["gfx"] = "gfx942"
    moved = tags_by_pair(write_matrix(tmp_path, document), context_root)
    assert moved[("mi355x-oam", "rocm7.2-torch2.13")] == before[("mi300x", "rocm7.2-torch2.13")]


def test_two_cpu_targets_share_one_build_and_the_build_matrix_lists_them(tmp_path: Path, context_root: Path) -> None:
    document = shipped()
    document["targets"]["local2"] = copy.deepcopy(document["targets"]["local"])
    document["matrix"]["include"].append({"gpu": "local2", "stack": "local"})
    plan = load_plan(write_matrix(tmp_path, document), context_root=context_root)
    local, local2 = (next(e for e in plan.entries if e.gpu == gpu) for gpu in ("local", "local2"))
    assert local.tag == local2.tag and local.build_id == "cpu-torch2.13.0-aiter0.1.7.post2.dev18"
    builds = json.loads(json.dumps(github_build_matrix(plan.entries, plan.staging_repository)))["include"]
    assert len(builds) == 5 and len(plan.entries) == 10
    cpu = next(item for item in builds if item["kind"] == "cpu")
    assert cpu["entries"] == [local.id, local2.id] and cpu["gpus"] == ["local", "local2"] and cpu["tag"] == local.tag
    gfx950 = [item for item in builds if item["gfx"] == "gfx950"]
    assert sorted(len(item["entries"]) for item in gfx950) == [2, 2]
    assert all(item["gpus"] == ["mi350x", "mi355x"] for item in gfx950)


def test_validated_tags_that_would_name_two_pairs_are_refused(tmp_path: Path) -> None:
    document = shipped()
    document["targets"]["local-b"] = copy.deepcopy(document["targets"]["local"])
    document["targets"]["local-local"] = copy.deepcopy(document["targets"]["local"])
    document["stacks"]["b-local"] = copy.deepcopy(document["stacks"]["local"]) | {"aiter": {"pypi": "0.1.8"}}
    document["matrix"]["include"] += [
        {"gpu": "local-b", "stack": "local"},
        {"gpu": "local", "stack": "b-local"},
        {"gpu": "local-local", "stack": "b-local"},
    ]
    with pytest.raises(MatrixError) as info:
        load_plan(write_matrix(tmp_path, document))
    lines = [str(problem) for problem in info.value.problems]
    where = f"{tmp_path / 'matrix.yaml'}:[0-9]+: matrix"
    assert any(
        re.fullmatch(
            rf"{where}\.include\[2\]: validated tag 'local-b-local-validated' would name both local-b x local and "
            r"local x b-local: expected one tag per GPU x stack \(rename one\)",
            line,
        )
        for line in lines
    ), lines
    # `<gpu>-validated` of GPU model local-local is local x local's stack tag.
    assert any(
        re.match(rf"{where}.*'local-local-validated' would name both local-local and local x local", line) for line in lines
    ), lines


PRINT_TAGS = "import sys; from pathlib import Path; from rocmci.plan import load_plan; "
PRINT_TAGS += "print(*(e.tag for e in load_plan(sys.argv[1], context_root=Path(sys.argv[2])).entries))"


def test_same_inputs_give_the_same_tags_across_processes(context_root: Path) -> None:
    """Hash seeds differ per process: tags must not depend on set or dict iteration order."""
    outputs = [
        subprocess.run(
            [sys.executable, "-c", PRINT_TAGS, str(DEFAULT_MATRIX), str(context_root)],
            env={**SUBPROCESS_ENV, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for seed in ("1", "2", "random")
    ]
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0].split() == [entry.tag for entry in load_plan(DEFAULT_MATRIX, context_root=context_root).entries]


def test_formatting_comments_order_and_run_only_fields_keep_tags(tmp_path: Path, context_root: Path) -> None:
    before = tags_by_pair(DEFAULT_MATRIX, context_root)
    document = shipped()
    document["targets"] = dict(reversed(document["targets"].items()))
    document["stacks"] = dict(reversed(document["stacks"].items()))
    document["targets"]["mi355x"]["runs_on"] = ["self-hosted", "other-label"]
    document["targets"]["mi355x"]["peak_bandwidth_tbs"] = 7.5
    document["targets"]["mi355x"]["device_policy"] = {**document["targets"]["mi355x"]["device_policy"], "shm_size": "32g"}
    document["gates"] = {"k_norm_max_kernels": 2, "k_norm_min_speedup": 1.5}
    assert tags_by_pair(write_matrix(tmp_path, document), context_root) == before


PIN_CHANGES: dict[str, tuple[tuple[str, ...], Any]] = {
    "base image tag": (("base_image", "tag"), "7.2.1-complete"),
    "base image name": (("base_image", "name"), "rocm/dev-ubuntu-22.04"),
    "base image digest": (("base_image", "digest"), "sha256:" + "0" * 64),
    "python": (("python",), "3.11"),
    "torch version": (("torch", "version"), "2.12.0"),
    "torch index": (("torch", "index"), "https://mirror.example/whl/rocm7.2"),
    "aiter git ref": (("aiter", "git", "ref"), "v0.1.21"),
    "aiter git repo": (("aiter", "git", "repo"), "https://github.com/example/aiter"),
    "aiter source": (("aiter",), {"pypi": "0.1.20"}),
}


@pytest.mark.parametrize("change", PIN_CHANGES, ids=str)
def test_changing_any_pin_gives_a_new_tag_for_that_stack_only(change: str, tmp_path: Path, context_root: Path) -> None:
    before = tags_by_pair(DEFAULT_MATRIX, context_root)
    document = shipped()
    stack = copy.deepcopy(document["stacks"]["rocm7.2-torch2.13"])
    keys, value = PIN_CHANGES[change]
    holder = stack
    for key in keys[:-1]:
        holder = holder[key]
    holder[keys[-1]] = value
    document["stacks"]["rocm7.2-torch2.13"] = stack
    after = tags_by_pair(write_matrix(tmp_path, document), context_root)
    assert set(after) == set(before)
    for pair, tag in after.items():
        assert (tag != before[pair]) == (pair[1] == "rocm7.2-torch2.13"), pair


def test_fixture_flag_changes_the_tag(tmp_path: Path, context_root: Path) -> None:
    before = tags_by_pair(DEFAULT_MATRIX, context_root)
    document = shipped()
    document["stacks"]["local"]["fixture"] = True
    assert tags_by_pair(write_matrix(tmp_path, document), context_root)[("local", "local")] != before[("local", "local")]


def test_changing_any_build_arg_or_the_context_gives_a_new_hash(context_root: Path) -> None:
    entry = load_plan(DEFAULT_MATRIX, context_root=context_root).entries[0]
    args = build_args_for(entry.target, entry.stack)
    assert args == entry.build_args
    digest = BuildContext(context_root).digest
    assert content_hash(args, digest) == entry.content_hash
    hashes = {content_hash({**args, key: value + "-changed"}, digest) for key, value in args.items()}
    hashes.add(content_hash({**args, "NEW_ARG": "1"}, digest))
    hashes.add(content_hash(args, "0" * 64))
    assert len(hashes) == len(args) + 2 and entry.content_hash not in hashes


def _edit(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n# changed\n")


CONTEXT_CHANGES = {
    "edit images/Dockerfile": lambda root: _edit(root / "images" / "Dockerfile"),
    "edit checks/probe.py": lambda root: _edit(root / "checks" / "probe.py"),
    "add a file under images/": lambda root: (root / "images" / "extra.sh").write_text("echo\n"),
    "add a nested file under checks/": lambda root: (
        (root / "checks" / "sub").mkdir() or (root / "checks" / "sub" / "x.py").touch()
    ),
    "rename a file": lambda root: (root / "checks" / "probe.py").rename(root / "checks" / "probe2.py"),
    "make a file executable": lambda root: (root / "images" / "Dockerfile").chmod(0o755),
}


@pytest.mark.parametrize("change", CONTEXT_CHANGES, ids=str)
def test_changing_the_build_context_gives_every_entry_a_new_tag(change: str, context_root: Path) -> None:
    (context_root / "images" / "Dockerfile").chmod(0o644)
    before = tags_by_pair(DEFAULT_MATRIX, context_root)
    assert BuildContext(context_root).digest == BuildContext(context_root).digest
    CONTEXT_CHANGES[change](context_root)
    after = tags_by_pair(DEFAULT_MATRIX, context_root)
    assert all(after[pair] != before[pair] for pair in before)


def test_files_outside_the_context_and_pycache_do_not_change_tags(context_root: Path) -> None:
    before = BuildContext(context_root).digest
    (context_root / "README.md").write_text("docs\n")
    (context_root / "checks" / "__pycache__").mkdir(exist_ok=True)
    (context_root / "checks" / "__pycache__" / "probe.cpython-311.pyc").write_bytes(b"\0")
    assert BuildContext(context_root).digest == before


# ---------------------------------------------------------------- include / exclude and select


def _axes_document(**axes: Any) -> dict[str, Any]:
    document = shipped()
    document["matrix"] = {"gpu": ["mi300x", "mi325x", "mi355x"], "stack": ["rocm7.1-torch2.12", "rocm7.2-torch2.13"], **axes}
    return document


@pytest.mark.parametrize(
    ("exclude", "dropped"),
    [
        ([{"gpu": "mi325x"}], {("mi325x", "rocm7.1-torch2.12"), ("mi325x", "rocm7.2-torch2.13")}),
        ([{"stack": "rocm7.1-torch2.12"}], {(g, "rocm7.1-torch2.12") for g in ("mi300x", "mi325x", "mi355x")}),
        ([{"gpu": "mi355x", "stack": "rocm7.2-torch2.13"}], {("mi355x", "rocm7.2-torch2.13")}),
        ([{"gpu": "mi300x", "stack": "rocm7.1-torch2.12"}, {"gpu": "mi350x"}], {("mi300x", "rocm7.1-torch2.12")}),
    ],
)
def test_exclude_drops_matching_pairs(exclude: list[dict[str, str]], dropped: set[tuple[str, str]], tmp_path: Path) -> None:
    full = [(g, s) for g in ("mi300x", "mi325x", "mi355x") for s in ("rocm7.1-torch2.12", "rocm7.2-torch2.13")]
    plan = load_plan(write_matrix(tmp_path, _axes_document(exclude=exclude)))
    assert [(e.gpu, e.stack_name) for e in plan.entries] == [pair for pair in full if pair not in dropped]


def test_includes_come_after_the_product_and_survive_excludes(tmp_path: Path) -> None:
    include = [{"gpu": "local", "stack": "local"}, {"gpu": "mi350x", "stack": "rocm7.2-torch2.13"}]
    document = _axes_document(exclude=[{"gpu": "mi350x"}, {"stack": "rocm7.1-torch2.12"}], include=include)
    pairs = [(e.gpu, e.stack_name) for e in load_plan(write_matrix(tmp_path, document)).entries]
    product = [(g, "rocm7.2-torch2.13") for g in ("mi300x", "mi325x", "mi355x")]
    assert pairs == [*product, ("local", "local"), ("mi350x", "rocm7.2-torch2.13")]


def test_select_by_gpu_and_entry() -> None:
    plan = load_plan(DEFAULT_MATRIX)
    assert [e.gpu for e in plan.select(gpu="mi325x")] == ["mi325x", "mi325x"]
    assert [e.id for e in plan.select(entry_id="local-cpu-torch2.13.0-aiter0.1.7.post2.dev18")] == [
        "local-cpu-torch2.13.0-aiter0.1.7.post2.dev18"
    ]
    assert plan.select() == list(plan.entries)
    with pytest.raises(MatrixError, match=r"--gpu: unknown GPU target 'mi999x' \(known: "):
        plan.select(gpu="mi999x")
    with pytest.raises(MatrixError, match=r"--entry: no entry 'nope'"):
        plan.select(gpu="local", entry_id="nope")
    assert plan.repository == "127.0.0.1:5000/rocmci"
    assert {plan.matrix.targets[name].name for name in plan.matrix.targets} == set(plan.matrix.targets)


# ---------------------------------------------------------------- the benchmark's matrix stays valid


def test_benchmark_matrix_expands_to_1000_entries_with_valid_unique_tags(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_matrix", REPO / "benchmarks" / "bench_matrix.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for layout in ("axes", "include"):
        path = tmp_path / f"{layout}.yaml"
        path.write_text(bench.generate(layout))
        entries = load_plan(path).entries
        assert len(entries) == 1000
        assert len({entry.id for entry in entries}) == 1000
        # One image per stack and gfx: entries of GPU models with the same gfx share a tag.
        assert len({entry.tag for entry in entries}) == len({(entry.stack_name, entry.gfx or "cpu") for entry in entries})
        assert all(DOCKER_TAG_RE.fullmatch(entry.tag) for entry in entries)


# ---------------------------------------------------------------- pins people really use

GOOD_FILES = sorted((Path(__file__).parent / "data" / "good_matrices").glob("*.yaml"))


@pytest.mark.parametrize("path", GOOD_FILES, ids=lambda path: path.stem)
def test_real_world_torch_pins_validate(path: Path) -> None:
    """AMD's repo.radeon.com local versions and nightly .dev pins (with pre: true) plan like any other pin."""
    plan = load_plan(path)
    torch = {e.stack.torch.version for e in plan.entries if e.is_amd}
    assert torch and all("+" in v or ".dev" in v for v in torch)
    assert all(DOCKER_TAG_RE.fullmatch(e.tag) for e in plan.entries)


def test_pytorch_table_applies_only_to_pytorch_indexes() -> None:
    """torch 2.8 has no ROCm 7.0 wheels on pytorch.org: refused there, left to the build gates on another index."""
    document = yaml.safe_load(GOOD_FILES[[p.stem for p in GOOD_FILES].index("torch_repo_radeon_local")].read_text())
    stack = document["stacks"]["rocm7.0-torch2.8-radeon"]
    stack["torch"]["index"] = "https://download.pytorch.org/whl/rocm7.0"
    stack["torch"]["version"] = "2.8.0"
    problems = problems_of(yaml.safe_dump(document, sort_keys=False))
    assert problems == [
        "m.yaml:30: stacks.rocm7.0-torch2.8-radeon.torch.version: torch 2.8.0 is not offered for ROCm 7.0 "
        "(torch 2.8 wheels exist for ROCm 6.3, 6.4): expected torch 2.10.x for ROCm 7.0"
    ]


def test_build_gate_compares_a_local_pin_whole() -> None:
    """images/gates.py: a pin with a local label names one build; a plain pin accepts the index's local label."""
    spec = importlib.util.spec_from_file_location("rocmci_gates", REPO / "images" / "gates.py")
    assert spec and spec.loader
    gates = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gates)
    torch = require_module("torch", "pip install -e '.[checks]'")

    installed = torch.__version__
    assert "+" in installed, "the host-side checks torch is a +cpu build"
    public, local = installed.split("+", 1)
    assert gates.check_torch(installed, "")[0] == []
    assert gates.check_torch(public, "")[0] == []
    assert gates.check_torch(f"{public}+{local}.other", "")[0] == [f"torch is {installed}, the stack pins {public}+{local}.other"]
    assert gates.check_torch(f"{public}+rocm7.0.0.lw.git64359f59", "7.0")[0][0].startswith(f"torch is {installed}")


def test_builders_and_staging_reach_the_plan_and_the_build_matrix(tmp_path: Path, context_root: Path) -> None:
    document = shipped()
    document["staging"] = "127.0.0.1:5000/rocmci-staging"
    document["builders"] = {"default": ["ubuntu-latest"], "rocm": ["self-hosted", "linux", "x64", "rocm-builder"]}
    document["stacks"]["rocm7.1-torch2.12"]["builder"] = ["self-hosted", "big-disk"]
    plan = load_plan(write_matrix(tmp_path, document), context_root=context_root)
    assert (plan.release_repository, plan.staging_repository) == ("127.0.0.1:5000/rocmci", "127.0.0.1:5000/rocmci-staging")
    assert plan.repository == plan.release_repository
    runs_on = {e.stack_name: list(e.builder_runs_on) for e in plan.entries}
    assert runs_on == {
        "rocm7.1-torch2.12": ["self-hosted", "big-disk"],
        "rocm7.2-torch2.13": ["self-hosted", "linux", "x64", "rocm-builder"],
        "local": ["ubuntu-latest"],
    }
    builds = github_build_matrix(plan.entries, plan.staging_repository)["include"]
    for item in builds:
        assert item["builder_runs_on"] == runs_on[item["stack"]]
        assert item["staging_ref"] == f"127.0.0.1:5000/rocmci-staging:{item['tag']}"
    assert "builder_runs_on" not in github_matrix(plan.entries)["include"][0]  # entry rows (validate jobs) stay as they were


def test_without_builders_or_staging_everything_builds_on_the_default_and_stages_in_the_release_repository(
    tmp_path: Path, context_root: Path
) -> None:
    document = shipped()
    document.pop("builders", None)
    document.pop("staging", None)
    plan = load_plan(write_matrix(tmp_path, document), context_root=context_root)
    assert plan.staging_repository == plan.release_repository == document["repository"]
    assert {tuple(e.builder_runs_on) for e in plan.entries} == {("ubuntu-latest",)}
    document["builders"] = {"default": ["cpu-builder"]}  # ROCm stacks fall back to the default builder
    plan = load_plan(write_matrix(tmp_path, document), context_root=context_root)
    assert {tuple(e.builder_runs_on) for e in plan.entries} == {("cpu-builder",)}


def test_the_build_matrix_json_names_builders_and_staging_refs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "matrix", "--json", "--builds"],
        cwd=REPO,
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["include"]
    plan = load_plan(DEFAULT_MATRIX)
    assert {row["stack"]: row["builder_runs_on"] for row in rows} == {
        "rocm7.1-torch2.12": ["self-hosted", "linux", "x64", "rocm-builder"],
        "rocm7.2-torch2.13": ["self-hosted", "linux", "x64", "rocm-builder"],
        "local": ["ubuntu-latest"],
    }
    assert all(row["staging_ref"] == f"{plan.staging_repository}:{row['tag']}" for row in rows)


PLAN_ONLY = """\
import sys
from invoke.main import program
try:
    program.run(["invoke", "matrix", "--json"], exit=False)
finally:
    heavy = ("docker", "requests", "urllib3", "rocmci.build", "rocmci.validate", "rocmci.oci")
    print("imported:" + ",".join(sorted(name for name in heavy if name in sys.modules)), file=sys.stderr)
"""


def test_matrix_json_loads_the_plan_stage_only() -> None:
    """`invoke matrix --json` (every CI run's first job) needs neither the Docker SDK nor requests nor a later stage."""
    done = subprocess.run([sys.executable, "-c", PLAN_ONLY], cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True)
    assert json.loads(done.stdout)["include"], done.stderr
    assert done.stderr.strip().splitlines()[-1:] == ["imported:"], done.stderr
