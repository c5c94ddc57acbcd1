"""Upcasters: bring a stored payload of an old schema version up to the current one, step by step.

STYLE.md principle 5: an event's shape evolves only by adding fields with defaults; when a
``schema_version`` is bumped, register a pure ``dict -> dict`` function for each step::

    @register("order.requested", from_version=1)
    def _order_requested_v1_to_v2(data: dict) -> dict:
        return {**data, "time_in_force": "GTC"}

The event store calls :func:`upcast` on read before strict decoding. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Step = Callable[[Payload], Payload]


class UpcastError(ValueError):
    """No path from a stored version to the current one."""


class Upcasters:
    """A registry of single steps ``(tag, from_version) -> step`` to ``from_version + 1``."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Step] = {}

    def register(self, tag: str, from_version: int) -> Callable[[Step], Step]:
        """Decorator: ``step`` turns a ``tag`` payload of ``from_version`` into the next one."""

        def add(step: Step) -> Step:
            key = (tag, from_version)
            if key in self._steps:
                raise ValueError(f"an upcaster for {tag} v{from_version} is already registered")
            self._steps[key] = step
            return step

        return add

    def upcast(self, tag: str, version: int, data: Payload, *, to_version: int) -> Payload:
        """Apply each step from ``version`` to ``to_version``; the input dict is not modified."""
        if version > to_version:
            raise UpcastError(f"{tag} v{version} is newer than this code's v{to_version}")
        while version < to_version:
            step = self._steps.get((tag, version))
            if step is None:
                raise UpcastError(f"no upcaster registered for {tag} v{version} -> v{version + 1}")
            data = step(dict(data))
            version += 1
        return data


#: The project's registry; event modules register their steps here.
UPCASTERS = Upcasters()


def register(tag: str, from_version: int) -> Callable[[Step], Step]:
    """Register a step in the project's registry (see :class:`Upcasters`)."""
    return UPCASTERS.register(tag, from_version)


def upcast(tag: str, version: int, data: Payload, *, to_version: int) -> Payload:
    """Upcast with the project's registry."""
    return UPCASTERS.upcast(tag, version, data, to_version=to_version)
