"""Fake ROCm torch for the probe tests: just what checks/probe.py touches."""

import os
import types

__version__ = "2.13.0+rocm7.2"
version = types.SimpleNamespace(hip="7.2.26015", cuda=None)
bfloat16 = "bfloat16"


def _arch():
    return os.environ.get("FAKE_GPU_ARCH", "")


def _tensor(shape, dtype=None, device=None):
    return types.SimpleNamespace(shape=shape, dtype=dtype, device=device)


randn = ones = zeros = _tensor


class cuda:  # stands in for the torch.cuda module
    @staticmethod
    def is_available():
        return bool(_arch())

    @staticmethod
    def device_count():
        return 1 if _arch() else 0

    @staticmethod
    def get_device_properties(index):
        return types.SimpleNamespace(name="AMD Instinct (fake)", gcnArchName=_arch(), major=9, minor=4)

    @staticmethod
    def synchronize():
        pass
