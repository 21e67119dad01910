"""cmlp's version: the one source (pyproject.toml reads it; cmlp.__version__ is it)."""
__version__ = "0.2.0"
