"""The base of every contract model: what rocmci reads it also writes with, through the same model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Scope = Literal["gpu", "cpu-only"]
VerdictName = Literal["pass", "fail", "error", "not-run"]
PASS: VerdictName = "pass"


def is_pass(verdict: str | None) -> bool:
    """Whether a verdict word (from a record, an annotation or a Verdict) is a pass: the one comparison every stage uses."""
    return verdict == PASS


SHA256_DIGEST = r"^sha256:[0-9a-f]{64}$"


class _Doc(BaseModel):
    # allow_inf_nan=False: pydantic would otherwise read the string "NaN" as a float (and write NaN as null).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)

    def to_json(self) -> str:
        """The JSON rocmci writes: field names as documented (`schema`, not `schema_`), indented, newline-terminated."""
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def short_dtype(dtype: str | None) -> str:
    """`torch.bfloat16` -> `bf16`: the dtype as every report shows it."""
    name = (dtype or "").removeprefix("torch.")
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32"}.get(name, name)
