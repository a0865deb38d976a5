"""`rocmci.result/v1`: what validate writes to reports/<entry id>/result.json after running the checks in an image."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from rocmci.contracts.base import _Doc


class StepRecord(_Doc):
    exit_code: int | None = None
    wall_s: float | None = None
    log: str | None = None
    skipped: str | None = None


class ImageInfo(_Doc):
    ref: str = ""
    id: str | None = None
    digest: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class HostInfo(_Doc):
    hostname: str | None = None
    gpu_devices: list[str] = Field(default_factory=list)
    gpu_name: str | None = None
    gfx: str | None = None
    device_count: int | None = None


class ResultDoc(_Doc):
    schema_: str = Field(alias="schema")
    entry: dict[str, Any]
    image: ImageInfo = Field(default_factory=ImageInfo)
    host: HostInfo = Field(default_factory=HostInfo)
    started: str | None = None
    finished: str | None = None
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_exits(cls, data: Any) -> Any:
        """Older run.py wrote `probe_exit`/`smoke_exit` instead of `steps`."""
        if isinstance(data, dict) and "steps" not in data and ("probe_exit" in data or "smoke_exit" in data):
            data = {**data, "steps": {s: {"exit_code": data.get(f"{s}_exit"), "log": f"{s}.log"} for s in ("probe", "smoke")}}
        return data
