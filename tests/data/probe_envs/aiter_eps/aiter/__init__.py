__version__ = "0.1.4"


def layernorm2d_fwd(input, weight, bias, eps=1e-5, x_bias=None):
    return input
