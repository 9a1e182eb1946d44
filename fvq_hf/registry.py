"""One registration idiom for every kind of variant (quantizer types, bridges, original layouts, metrics), as timm's
`register_model`: a class declares its own name, `@REGISTRY.register` adds it, `REGISTRY.get(name)` finds it (an
unknown name is a ValueError that lists the names), and `REGISTRY.names(filter)` lists them in registration order.
A name may be reserved for a variant that is no class (bridges: "none", plain VQ): no class can take it, and it is
listed among the names an error offers.

    QUANTIZERS = Registry("quantizer_type", Quantizer)

    @QUANTIZERS.register
    class VectorQuantizer(Quantizer):
        name = "vq"
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes of one kind, by the name each declares in its class attribute `attribute`.

    `kind` names the registry in errors (the config key it serves, e.g. "bridge_type"); `base` is the class every
    entry must derive from; `reserved` maps names no class may take to what they mean. Registering the same class
    again is a no-op; another class under a taken name is an error, so that a variant is never replaced by accident.
    """

    def __init__(self, kind: str, base: type, attribute: str = "name",
                 reserved: dict[str, str] | None = None) -> None:
        self.kind, self.base, self.attribute = kind, base, attribute
        self.reserved = dict(reserved or {})
        self._entries: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Add `cls` under the name it declares; returns it, so that it serves as a class decorator."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} is not a {self.base.__name__} subclass: it cannot be a {self.kind}.")
        name = cls.__dict__.get(self.attribute)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__} declares no {self.attribute!r} of its own: a {self.kind} needs its "
                            "name on the class.")
        if name in self.reserved:
            raise ValueError(f"The {self.kind} {name!r} is reserved for {self.reserved[name]}: {cls.__name__} needs "
                             "another name.")
        taken = self._entries.get(name)
        if taken is not None and taken is not cls:
            raise ValueError(f"The {self.kind} {name!r} is taken by {taken.__module__}.{taken.__qualname__}.")
        self._entries[name] = cls
        return cls

    def get(self, name: str) -> T:
        """The class registered as `name`; a ValueError lists the names there are (a reserved name has no class)."""
        if name in self.reserved:
            raise ValueError(f"The {self.kind} {name!r} is reserved for {self.reserved[name]}: it names no class.")
        if name not in self._entries:
            names = [*self._entries, *self.reserved]
            raise ValueError(f"Unknown {self.kind} {name!r}; expected one of {', '.join(names) or 'none'}.")
        return self._entries[name]

    def names(self, filter: str | Callable[[T], bool] | None = None) -> list[str]:
        """The registered names in registration order; `filter` is a shell pattern ("fvq-*") or a predicate on the
        class."""
        if filter is None:
            return list(self._entries)
        if isinstance(filter, str):
            return fnmatch.filter(self._entries, filter)
        return [name for name, cls in self._entries.items() if filter(cls)]

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
