"""Subpackages that share their name with a public function: `runner.train(config)` and
`runner.results(db, sweep)` are calls, and `runner.train` / `runner.results` are also the packages
that hold the loop and the read side. Importing a subpackage binds its name on `runner`, so the
package itself must answer the call: its module class gains a `__call__` that forwards to the
function, imported on first use (so importing the package stays cheap and torch-free)."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(package: str, target: str, doc: str) -> None:
    """Make the module `package` callable: calling it calls `target` ('module:function')."""
    module_name, _, attr = target.partition(":")

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module_name), attr)(*args, **kwargs)

    CallablePackage.__call__.__doc__ = doc
    sys.modules[package].__class__ = CallablePackage
