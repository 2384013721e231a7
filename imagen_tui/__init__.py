"""ImaGen: a model-agnostic terminal workbench for image generation."""

# The single source of the version (pyproject.toml reads it from here):
# importlib.metadata would cost ~80 ms at every start of the CLI.
__version__ = "0.1.0"
