"""rocmci.contracts and rocmci.labels: the exported JSON Schemas are current, the real output of checks/ (run on this
host with the local entry's pins) follows both the schema files and the models, non-finite numbers are refused, the
standalone scripts' schema ids equal rocmci.labels', and each label name and schema id is spelled once in rocmci/."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rocmci import labels
from rocmci.contracts import BuildRecord, CompatDoc, ProbeDoc, PublishRecord, ResultDoc, SmokeCase, SmokeDoc, _Doc
from rocmci.contracts.export import DOCUMENTS, SCHEMAS_DIR, file_name, stale
from tests.helpers import ROOT, require_module, run_checks_on_host

jsonschema = require_module("jsonschema", "pip install -e '.[test]'")

DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def schema_file(model: type[_Doc]) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / file_name(model)).read_text())


def assert_follows(model: type[_Doc], document: Any) -> None:
    """The document validates against the exported schema file and against the model."""
    jsonschema.Draft202012Validator(schema_file(model)).validate(document)
    model.model_validate(document)


# ---------------------------------------------------------------- exported schemas


def test_exported_schemas_are_current() -> None:
    assert stale() == [], "run `python -m rocmci.contracts`"
    proc = subprocess.run([sys.executable, "-m", "rocmci.contracts", "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_stale_or_stray_schema_file_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, copy)
    (copy / file_name(ProbeDoc)).write_text("{}\n")
    (copy / "rocmci.gone.v1.json").write_text("{}\n")
    (copy / file_name(SmokeDoc)).unlink()
    assert sorted(stale(copy)) == sorted([file_name(ProbeDoc), file_name(SmokeDoc), "rocmci.gone.v1.json"])


def test_every_schema_file_is_a_valid_json_schema_named_by_its_id() -> None:
    for model in DOCUMENTS:
        schema = schema_file(model)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == model.model_fields["schema_"].default and "schema" in schema["required"]


# ---------------------------------------------------------------- the real output of checks/ on this host


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """probe and smoke as validate runs them in the local image, result.json by validate's own writer, compat.json by
    the report stage: every document of one real run."""
    from rocmci.plan import PIN_LABELS, load_plan
    from rocmci.report import collect
    from rocmci.validate import RunResult, StepOutcome, write_result

    entry = load_plan().select("local")[0]
    work = tmp_path_factory.mktemp("real") / entry.id
    work.mkdir()
    pins = {k: v for k, v in entry.labels.items() if k in PIN_LABELS}
    result = RunResult(entry.id, entry.image_ref("127.0.0.1:5000/rocmci"), work, image={"id": None, "labels": pins})
    for name, exit_code in run_checks_on_host(entry, work).items():
        setattr(result, name, StepOutcome(exit_code, 1.0, f"{name}.log"))
    write_result(work, entry, result, Path("/nonexistent-dev"))
    (work.parent / "compat.json").write_text(json.dumps(collect(work.parent, [entry.summary()]).to_json(), allow_nan=False))
    return work, entry.summary()


@pytest.mark.parametrize(
    ("path", "model"),
    [("probe.json", ProbeDoc), ("smoke.json", SmokeDoc), ("result.json", ResultDoc), ("../compat.json", CompatDoc)],
)
def test_real_documents_follow_the_schema_files_and_the_models(
    real_run: tuple[Path, dict[str, Any]], path: str, model: type[_Doc]
) -> None:
    work, _ = real_run
    text = (work / path).read_text()
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"{path}: non-standard JSON constant {name}"))
    assert_follows(model, document)


def test_the_real_run_is_what_the_models_say(real_run: tuple[Path, dict[str, Any]]) -> None:
    """Not an empty document that happens to validate: the CPU-only run passes and names its cases."""
    work, entry = real_run
    probe = ProbeDoc.model_validate_json((work / "probe.json").read_text())
    smoke = SmokeDoc.model_validate_json((work / "smoke.json").read_text())
    result = ResultDoc.model_validate_json((work / "result.json").read_text())
    compat = CompatDoc.model_validate_json((work.parent / "compat.json").read_text())
    assert (probe.status, probe.scope) == ("pass", "cpu-only") and (smoke.status, smoke.scope) == ("pass", "cpu-only")
    assert smoke.cases and all(case.status == "pass" for case in smoke.cases)
    assert result.entry == entry and set(result.steps) == {"probe", "smoke"}
    assert [record.verdict for record in compat.entries] == ["pass"] and compat.summary.total == 1


def test_a_model_written_document_reads_back_equal(real_run: tuple[Path, dict[str, Any]]) -> None:
    work, _ = real_run
    result = ResultDoc.model_validate_json((work / "result.json").read_text())
    assert (work / "result.json").read_text() == result.to_json()  # the writer is the model


# ---------------------------------------------------------------- strictness


@pytest.mark.parametrize("bad", ["NaN", "Infinity", float("nan"), float("-inf")])
def test_non_finite_numbers_are_refused(bad: Any) -> None:
    with pytest.raises(ValidationError, match="finite"):
        SmokeCase.model_validate({"impl": "torch", "status": "pass", "graph_us": bad})


def test_build_and_publish_records_round_trip_and_refuse_bad_digests() -> None:
    build = BuildRecord(
        build_id="cpu-torch2.13.0",
        entries=["local-cpu"],
        reference="127.0.0.1:5000/staging:cpu-torch2.13.0-0123456789ab",
        digest=DIGEST_A,
        image_id=DIGEST_B,
        pushed=True,
        finished="2026-01-01T00:00:00Z",
    )
    publish = PublishRecord(
        entry_id="local-cpu",
        repository="127.0.0.1:5000/release",
        digest=DIGEST_A,
        report_digest=DIGEST_B,
        tags_moved=["local-validated"],
        signed=False,
        finished="2026-01-01T00:00:00Z",
    )
    for record in (build, publish):
        document = json.loads(record.to_json())
        assert document["schema"] in (labels.BUILD_SCHEMA, labels.PUBLISH_SCHEMA)
        assert_follows(type(record), document)
        assert type(record).model_validate(document) == record
        with pytest.raises(ValidationError, match="digest"):
            type(record).model_validate({**document, "digest": "sha256:short"})
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**document, "schema": "rocmci.other/v1"}, schema_file(type(record)))
        without_schema = {k: v for k, v in document.items() if k != "schema"}
        with pytest.raises(jsonschema.ValidationError, match="'schema' is a required property"):
            jsonschema.validate(without_schema, schema_file(type(record)))


# ---------------------------------------------------------------- labels and schema ids, once


def _module_constant(path: Path, name: str) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError(f"{path}: no module-level {name}")


def _dict_value(path: Path, key: str) -> set[str]:
    """Every constant string stored under `key` in a dict display of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == key and isinstance(v, ast.Constant):
                    found.add(str(v.value))
    return found


def test_the_standalone_scripts_schema_ids_equal_rocmci_labels() -> None:
    """checks/ and images/ run inside images with the standard library only: they keep their own copy."""
    assert _module_constant(ROOT / "checks" / "probe.py", "SCHEMA") == labels.PROBE_SCHEMA
    assert _module_constant(ROOT / "checks" / "smoke_layernorm.py", "SCHEMA") == labels.SMOKE_SCHEMA
    assert _dict_value(ROOT / "images" / "gates.py", "schema") == {labels.VERSIONS_SCHEMA}


LABEL_OR_SCHEMA = re.compile(r"io\.rocmci\.[a-z][a-z-]*|rocmci\.[a-z]+/v[0-9]+")


def test_each_label_name_and_schema_id_is_spelled_once_in_rocmci() -> None:
    """`grep -rn 'io\\.rocmci\\.' rocmci` (and the same for `rocmci.<doc>/vN`) finds each name once: in rocmci.labels."""
    places: dict[str, list[str]] = {}
    for path in sorted((ROOT / "rocmci").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in LABEL_OR_SCHEMA.findall(line):
                places.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{number}")
    assert places, "the grep found nothing: the pattern is wrong"
    spelled_twice = {name: where for name, where in places.items() if len(where) != 1}
    assert spelled_twice == {}
    assert {where[0].split(":")[0] for where in places.values()} == {"rocmci/labels.py"}
    defined = {value for name, value in vars(labels).items() if name.isupper()}
    assert defined == set(places), "a constant in rocmci.labels does not match the pattern, or a name is missing"


def test_each_image_kind_sets_its_own_role() -> None:
    """Entry images are built FROM the local base image (role base): they must not inherit that role."""
    from rocmci.plan import load_plan

    for entry in load_plan().entries:
        assert entry.labels[labels.ROLE_LABEL] == "entry", entry.id
