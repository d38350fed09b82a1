"""PEP 562 lazy exports for a package's ``__init__``: a public name is imported from its submodule
on first use, so that importing the package (e.g. for the command line's argument parsing) does not
import torch. A leaf module: it imports nothing of gnnsys, so any layer may use it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, namespace: dict[str, Any], exports: dict[str, str]) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of the package ``package`` (its ``__name__``).

    Args:
        package: the package's ``__name__``.
        namespace: the package's ``globals()``; each name is cached there on first use, so the
            next look-up does not reach ``__getattr__``.
        exports: public name -> the submodule (relative to ``package``) that defines it.

    The returned function raises ``AttributeError`` for a name not in ``exports``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return __getattr__
