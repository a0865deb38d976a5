"""Domain tables shipped as data files next to this module (GPU models, torch/ROCm wheel pairs): read on first use."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any


@functools.cache
def load(name: str) -> dict[str, Any]:
    """The YAML data file `name` of this package, parsed once per process."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: every task start reads these
    return yaml.load(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"), Loader=loader)
