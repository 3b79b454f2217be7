"""URL rules whose builders are compiled once per process, not once per app.

Werkzeug writes two small Python functions for every rule it binds (`url_for`'s builders) and compiles them from an
AST: three quarters of the cost of building an app (about 40 ms of 55 for fieldcase's 125 rules). A process builds
an app for every command and every test, always from the same rules, so the compiled builder is kept by what it is
made of: the rule's text and its parsed parts. Each builder takes the rule as its first argument (converters are
looked up through it when a URL is built), so one function serves every rule of the same shape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule as WerkzeugRule

_builders: dict[tuple[Any, ...], Callable[..., tuple[str, str]]] = {}
_lock = threading.Lock()


class Rule(WerkzeugRule):
    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        if self.defaults:  # a default is folded into the code through its converter: built afresh, as Werkzeug does
            return super()._compile_builder(append_unknown)
        key = (type(self), self.rule, tuple(self._trace), append_unknown)
        with _lock:
            builder = _builders.get(key)
            if builder is None:
                builder = _builders[key] = super()._compile_builder(append_unknown)
        return builder
