"""A small decorator-filled registry (after timm's ``register_model`` / ``create_model``).

One instance per kind of thing (backbones, tasks); entries register themselves where they are
defined, and lookups of unknown names fail with the known names and the closest suggestion.
"""

import difflib
from dataclasses import dataclass, field

from pipelines.errors import UserError


@dataclass(frozen=True)
class Entry:
    name: str
    obj: object
    meta: dict = field(default_factory=dict)


class Registry:
    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name, **meta):
        """Decorator: ``@registry.register("name", key=value)`` records the object and its metadata."""

        def decorate(obj):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj

        return decorate

    def entry(self, name):
        if name not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(known)}")
        return self._entries[name]

    def get(self, name):
        return self.entry(name).obj

    def names(self):
        return sorted(self._entries)

    def entries(self):
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name):
        return name in self._entries
