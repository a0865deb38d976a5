"""rocmci: know before you deploy that an image's torch and aiter pins work on your AMD GPU."""

__version__ = "0.1.0"
