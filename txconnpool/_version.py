"""The version of txconnpool."""

__version__ = "0.2.0.dev0"
