"""Records one stage writes for a later one: the compat record (report), the build record (build --push) and the
publish record (publish/promote)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rocmci.contracts.base import SHA256_DIGEST, Scope, VerdictName, _Doc
from rocmci.labels import BUILD_SCHEMA, COMPAT_SCHEMA, PUBLISH_SCHEMA


class CompatImage(_Doc):
    ref: str
    id: str | None = None
    digest: str | None = None


class Subject(_Doc):
    name: str
    digest: str = Field(pattern=SHA256_DIGEST)


class CompatHost(_Doc):
    gpu_name: str | None = None
    gfx: str | None = None
    gpu_devices: list[str] = Field(default_factory=list)
    hostname_hash: str | None = None


class KNormRecord(_Doc):
    impl: str
    kind: str
    tokens: int
    hidden: int
    dtype: str
    speedup_vs_torch_upcast: float
    graph_us: float | None = None
    kernels_per_call: float | None = None
    bandwidth_frac: float | None = None


class CompatStep(_Doc):
    exit_code: int | None = None
    wall_s: float | None = None
    skipped: str | None = None
    status: Literal["pass", "fail", "error"] | None = None


class CompatRecord(_Doc):
    """One entry of compat.json's `entries`; also the report attached to a published image."""

    entry: dict[str, Any]
    image: CompatImage | None = None
    subject: Subject | None = None
    host: CompatHost | None = None
    verdict: VerdictName
    scope: Scope
    label: str
    fixture: bool = False
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    k_norm: KNormRecord | None = None
    k_norm_speedup: float | None = None
    steps: dict[str, CompatStep | None] = Field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    report_time: str


class CompatSummary(_Doc):
    passed: int = Field(alias="pass")
    fail: int
    error: int
    not_run: int = Field(alias="not-run")
    total: int


class CompatDoc(_Doc):
    """compat.json: every planned entry's record, in plan order."""

    schema_: Literal[COMPAT_SCHEMA] = Field(alias="schema", default=COMPAT_SCHEMA)
    generated_at: str
    rocmci_version: str
    summary: CompatSummary
    entries: list[CompatRecord]


class BuildRecord(_Doc):
    """`<reports>/builds/<build_id>.json`, written by `invoke build --push`: the staging tag and the digest it names."""

    schema_: Literal[BUILD_SCHEMA] = Field(alias="schema", default=BUILD_SCHEMA)
    build_id: str
    entries: list[str]
    reference: str  # <staging repository>:<tag>
    digest: str = Field(pattern=SHA256_DIGEST)  # manifest digest
    image_id: str = Field(pattern=SHA256_DIGEST)  # config digest
    pushed: bool  # false: the tag already existed, nothing was rebuilt
    finished: str  # ISO 8601 time


class PublishRecord(_Doc):
    """`<reports>/<entry id>/publish.json`, written by publish/promote: what it pushed, instead of editing result.json."""

    schema_: Literal[PUBLISH_SCHEMA] = Field(alias="schema", default=PUBLISH_SCHEMA)
    entry_id: str
    repository: str
    digest: str = Field(pattern=SHA256_DIGEST)
    report_digest: str = Field(pattern=SHA256_DIGEST)
    tags_moved: list[str] = Field(default_factory=list)
    signed: bool = False
    finished: str
