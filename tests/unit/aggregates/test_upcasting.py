"""Upcasters move an old payload to the current version step by step, purely."""

from __future__ import annotations

import pytest

from aggregates.upcasting import UpcastError, Upcasters


def test_upcast_when_two_steps_registered_then_applied_in_order_without_mutating_input() -> None:
    registry = Upcasters()

    @registry.register("order.requested", from_version=1)
    def _one(data: dict) -> dict:
        data["tif"] = "GTC"
        return data

    @registry.register("order.requested", from_version=2)
    def _two(data: dict) -> dict:
        return {**data, "steps": [*data.get("steps", []), 2]}

    original = {"a": 1}
    assert registry.upcast("order.requested", 1, original, to_version=3) == {
        "a": 1,
        "tif": "GTC",
        "steps": [2],
    }
    assert original == {"a": 1}
    assert registry.upcast("order.requested", 3, original, to_version=3) == original


def test_upcast_when_step_missing_or_version_newer_then_error_names_it() -> None:
    registry = Upcasters()
    with pytest.raises(UpcastError, match=r"order\.requested v1 -> v2"):
        registry.upcast("order.requested", 1, {}, to_version=2)
    with pytest.raises(UpcastError, match="newer"):
        registry.upcast("order.requested", 4, {}, to_version=2)


def test_register_when_same_step_twice_then_refused() -> None:
    registry = Upcasters()
    registry.register("x.y", 1)(dict)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("x.y", 1)(dict)
