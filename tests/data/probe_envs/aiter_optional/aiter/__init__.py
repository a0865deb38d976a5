__version__ = "0.1.9"


def layernorm2d_fwd(input, weight=None, bias=None, epsilon=1e-5, x_bias=None):
    return input
