"""Every `io.rocmci.*` label name and every `rocmci.*/vN` schema id, defined once (a leaf: imports nothing).

checks/ and images/ scripts run inside images with the standard library only: they keep their own copy of their
schema id, and tests/test_contracts.py proves each copy equals the one here.
"""

from __future__ import annotations

# ---------------------------------------------------------------- labels (images and containers)

LABEL_PREFIX = "io.rocmci."

MANAGED = "io.rocmci.managed"  # "true" on everything rocmci makes; clean looks only at these
ROLE = "io.rocmci.role"  # what made it: base, entry (images); validate, doctor (containers)
ENTRY = "io.rocmci.entry"
BUILD = "io.rocmci.build"
GPU = "io.rocmci.gpu"
DEVICES = "io.rocmci.devices"
GFX = "io.rocmci.gfx"
STACK = "io.rocmci.stack"
ROCM = "io.rocmci.rocm"
PYTHON = "io.rocmci.python"
TORCH = "io.rocmci.torch"
TORCH_INDEX = "io.rocmci.torch-index"
AITER = "io.rocmci.aiter"
AITER_SOURCE = "io.rocmci.aiter-source"
AITER_KERNELS = "io.rocmci.aiter-kernels"
CONTENT_HASH = "io.rocmci.content-hash"
FIXTURE = "io.rocmci.fixture"
EXTRA_CA = "io.rocmci.extra-ca"
VERDICT = "io.rocmci.verdict"  # an annotation of the report artifact attached to a published image

# ---------------------------------------------------------------- schema ids (JSON documents rocmci reads or writes)

PROBE_SCHEMA = "rocmci.probe/v1"
SMOKE_SCHEMA = "rocmci.smoke/v1"
RESULT_SCHEMA = "rocmci.result/v1"
COMPAT_SCHEMA = "rocmci.compat/v1"
BUILD_SCHEMA = "rocmci.build/v1"
PUBLISH_SCHEMA = "rocmci.publish/v1"
LOCK_SCHEMA = "rocmci.lock/v2"
LOCK_V1_SCHEMA = "rocmci.lock/v1"  # refused with a message: it records no verdict scope
DOCTOR_SCHEMA = "rocmci.doctor/v1"
HISTORY_SCHEMA = "rocmci.history/v1"
BISECT_SCHEMA = "rocmci.bisect/v1"
BUMP_SCHEMA = "rocmci.bump/v1"
VERSIONS_SCHEMA = "rocmci.versions/v1"
