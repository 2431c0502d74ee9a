"""Public homes: the `modal.*` modules that the core's classes name as their `__module__`.

The core defines Modal's classes and exceptions and imports nothing from the public `modal`
package; each class claims the Modal module that re-exports it as its home, so reprs and
tracebacks read `modal.exception.NotFoundError`. cloudpickle pickles a class by reference only
when its home module is loaded in the pickling process (otherwise it ships the class by value,
and `except`/`isinstance` fail on the other side), so a process that pickles core objects
without having imported `modal` itself (a container) loads the homes first. The package is
named here as data, not imported: the dependency runs from `modal` to the core only.
"""

from __future__ import annotations

import importlib

# Importing the package loads the homes its `__init__` imports (exception, types, app, ...);
# `call_graph` is not among them.
PUBLIC_HOMES = ("modal", "modal.call_graph")


def load() -> None:
    """Load the public homes, so core classes pickle by reference in this process."""
    for name in PUBLIC_HOMES:
        importlib.import_module(name)
