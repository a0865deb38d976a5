"""Fake CUDA torch build with no GPU, for the probe tests."""

import types

__version__ = "2.13.0+cu130"
version = types.SimpleNamespace(hip=None, cuda="13.0")


class cuda:  # stands in for the torch.cuda module
    @staticmethod
    def is_available():
        return False

    @staticmethod
    def device_count():
        return 0
