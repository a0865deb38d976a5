"""Typed contracts: pydantic models of every document that crosses a stage. Writers and readers use the same model;
non-finite numbers are refused. `python -m rocmci.contracts` exports their JSON Schemas to rocmci/resources/schemas/."""

from rocmci.contracts.base import Scope, VerdictName, _Doc, is_pass, short_dtype
from rocmci.contracts.checks import Finding, Gate, ProbeDoc, ProbeGpu, SkippedItem, SmokeCase, SmokeDevice, SmokeDoc
from rocmci.contracts.records import (
    BuildRecord,
    CompatDoc,
    CompatHost,
    CompatImage,
    CompatRecord,
    CompatStep,
    CompatSummary,
    KNormRecord,
    PublishRecord,
    Subject,
)
from rocmci.contracts.result import HostInfo, ImageInfo, ResultDoc, StepRecord

__all__ = [
    "BuildRecord",
    "CompatDoc",
    "CompatHost",
    "CompatImage",
    "CompatRecord",
    "CompatStep",
    "CompatSummary",
    "Finding",
    "Gate",
    "HostInfo",
    "ImageInfo",
    "KNormRecord",
    "ProbeDoc",
    "ProbeGpu",
    "PublishRecord",
    "ResultDoc",
    "Scope",
    "SkippedItem",
    "SmokeCase",
    "SmokeDevice",
    "SmokeDoc",
    "StepRecord",
    "Subject",
    "VerdictName",
    "_Doc",
    "is_pass",
    "short_dtype",
]
