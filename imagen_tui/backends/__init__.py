"""Backend adapters and their registry. Importing this package registers the
built-in types."""

from imagen_tui.backends.base import Backend, Request, Result
from imagen_tui.backends.mock import MOCK_TYPE
from imagen_tui.backends.registry import register

register(MOCK_TYPE)

__all__ = ["Backend", "Request", "Result"]
