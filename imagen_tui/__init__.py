"""ImaGen: a model-agnostic terminal workbench for image generation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imagen-tui")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
