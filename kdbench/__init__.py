"""kdbench: a benchmark for knowledge distillation, unimodal and multimodal.

The import is light (no torch): ``kdbench --help`` and ``kdbench list`` stay fast.
"""

from __future__ import annotations

from kdbench.errors import UserError
from kdbench.hookspecs import hookimpl
from kdbench.plugins import get_plugin_manager, load_registry

__version__ = "0.1.0"
__all__ = ["UserError", "__version__", "get_plugin_manager", "hookimpl", "load_registry"]
