"""A sound aiter 0.1.20 for the probe tests; the first call sleeps FAKE_FIRST_CALL_S seconds (a JIT build).
FAKE_AITER_VERSION replaces the version it reports (its package metadata stays 0.1.20)."""

import os
import time

__version__ = os.environ.get("FAKE_AITER_VERSION", "0.1.20")


def layernorm2d_fwd(input, weight, bias, epsilon=1e-5, x_bias=None):
    time.sleep(float(os.environ.get("FAKE_FIRST_CALL_S", "0")))
    return input
