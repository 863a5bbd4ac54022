"""Old import paths that still work: importing one warns once (``FutureWarning``, naming the new
path) and gives the module at its new path, the very same object, so ``from sparsify.module
import ImageClassifier`` and a config's ``class_path: sparsify.module.ImageClassifier`` keep
working.

``RENAMED`` maps an old module (or package, with everything under it) to its new name. An import
finder at the front of ``sys.meta_path`` answers only for those names (the old files are gone);
it comes first so that ``sparsify.launchers.local`` is the module ``sparsify.app.launchers.local``
and not a second copy of its file.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

RENAMED = {
    "sparsify.cli": "sparsify.app.cli",
    "sparsify.compare": "sparsify.app.compare",
    "sparsify.compare_report": "sparsify.app.compare_report",
    "sparsify.launchers": "sparsify.app.launchers",
    "sparsify.summary": "sparsify.app.summary",
    "sparsify.tracking": "sparsify.app.tracking",
    "sparsify.module": "sparsify.lightning.module",
    "sparsify.iterative": "sparsify.lightning.iterative",
}

_warned: set[str] = set()


def warn_renamed(old: str, new: str) -> None:
    """Warn, once per ``old`` in this process, that ``old`` is now ``new`` (a module, a class or
    an argument: every old spelling of the project warns through here)."""
    if old not in _warned:
        _warned.add(old)
        message = f"{old} is deprecated: use {new}"
        warnings.warn(message, FutureWarning, stacklevel=3)


def renamed_from(old: str) -> str | None:
    """The key of ``RENAMED`` that module ``old`` is or lies under, or ``None``."""
    return next((key for key in RENAMED if old == key or old.startswith(key + ".")), None)


class RenamedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the module at its new name."""

    def find_spec(self, fullname, path=None, target=None):
        if renamed_from(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        old = renamed_from(spec.name)
        warn_renamed(old, RENAMED[old])  # once for a package and everything under it
        return importlib.import_module(RENAMED[old] + spec.name[len(old) :])

    def exec_module(self, module) -> None:
        """The module ran at its new name already."""


def install() -> None:
    """Add the finder to ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, RenamedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, RenamedModules())
