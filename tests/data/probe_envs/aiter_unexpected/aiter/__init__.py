__version__ = "0.1.99"


def layernorm2d_fwd(x, gamma, beta, epsilon=1e-5, residual=None):
    return x
