"""Every `io.rocmci.*` label name and every `rocmci.*/vN` schema id, defined once (a leaf: imports nothing).

checks/ and images/ scripts run inside images with the standard library only: they keep their own copy of their
schema id, and tests/test_contracts.py proves each copy equals the one here.
"""

from __future__ import annotations

# ---------------------------------------------------------------- labels (images and containers)

MANAGED_LABEL = "io.rocmci.managed"  # "true" on everything rocmci makes; clean looks only at these
ROLE_LABEL = "io.rocmci.role"  # what made it: base, entry (images); validate, doctor (containers)
ENTRY_LABEL = "io.rocmci.entry"
BUILD_LABEL = "io.rocmci.build"
GPU_LABEL = "io.rocmci.gpu"
DEVICES_LABEL = "io.rocmci.devices"
GFX_LABEL = "io.rocmci.gfx"
STACK_LABEL = "io.rocmci.stack"
ROCM_LABEL = "io.rocmci.rocm"
PYTHON_LABEL = "io.rocmci.python"
TORCH_LABEL = "io.rocmci.torch"
TORCH_INDEX_LABEL = "io.rocmci.torch-index"
AITER_LABEL = "io.rocmci.aiter"
AITER_SOURCE_LABEL = "io.rocmci.aiter-source"
AITER_KERNELS_LABEL = "io.rocmci.aiter-kernels"
CONTENT_HASH_LABEL = "io.rocmci.content-hash"
FIXTURE_LABEL = "io.rocmci.fixture"
IMAGE_LABEL = "io.rocmci.image"  # on a check container: the image reference `invoke check --image` was given
EXTRA_CA_LABEL = "io.rocmci.extra-ca"
VERDICT_LABEL = "io.rocmci.verdict"  # an annotation of the report artifact attached to a published image

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
