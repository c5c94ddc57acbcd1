"""The replay report's charts draw what happened: a held value is drawn flat, not as a ramp."""

from __future__ import annotations

import re
from decimal import Decimal

from replay.report import line_chart
from replay.walk import Series


def _drawn_y_at(svg: str, x: float) -> float:
    """The y the chart's path passes at horizontal position ``x`` (the last one, at a jump)."""
    path = re.search(r'<path d="([^"]+)"', svg)
    assert path is not None
    commands = re.findall(r"([MLHV])([\d.]+)(?:,([\d.]+))?", path.group(1))
    cx = cy = 0.0
    y_at = None
    for op, a, b in commands:
        if op in "ML":
            nx, ny = float(a), float(b)
        elif op == "H":
            nx, ny = float(a), cy
        else:
            nx, ny = cx, float(a)
        if op != "M" and min(cx, nx) <= x <= max(cx, nx):
            # a vertical jump ends at its new y; a horizontal or sloped segment is interpolated
            y_at = ny if nx == cx else cy + (ny - cy) * (x - cx) / (nx - cx)
        cx, cy = nx, ny
    assert y_at is not None
    return y_at


def _x_of(svg: str, t: int, t0: int, t1: int) -> float:
    left = float(
        re.findall(r'<line x1="([\d.]+)" y1="[\d.]+" x2="[\d.]+" y2="[\d.]+" stroke', svg)[0]
    )
    right = float(re.findall(r'<line x1="[\d.]+" y1="[\d.]+" x2="([\d.]+)" y2', svg)[0])
    return left + (t - t0) / (t1 - t0) * (right - left)


def test_line_chart_when_exposure_was_zero_between_samples_then_it_is_drawn_flat_at_zero() -> None:
    series = Series(100)
    for at, value in ((0, "0.5"), (1_000, "0"), (9_000, "0"), (10_000, "0.5")):
        series.put(at, Decimal(value))
    svg = line_chart("exposure", "Gross exposure", series, percent=True)
    zero_y = _drawn_y_at(svg, _x_of(svg, 2_000, 0, 10_000))
    # Everywhere between the zero samples, including just before the next non-zero one, the line
    # sits at the zero level: no ramp up through a period when nothing was held.
    for at in (1_500, 5_000, 8_000, 9_500, 9_990):
        assert _drawn_y_at(svg, _x_of(svg, at, 0, 10_000)) == zero_y, at
    # ... and it sits above the zero level while the position was held.
    assert _drawn_y_at(svg, _x_of(svg, 500, 0, 10_000)) < zero_y


def test_line_chart_when_drawn_then_it_has_time_ticks_and_gridlines() -> None:
    series = Series(100)
    for at, value in ((0, "100"), (3_600_000, "101"), (7_200_000, "99")):
        series.put(at, Decimal(value))
    svg = line_chart("equity", "Equity", series, percent=False)
    assert svg.count('class="grid"') >= 8
    labels = re.findall(r'class="axis" text-anchor="(?:start|middle|end)">(\d\d:\d\d:\d\d)<', svg)
    assert labels[0] == "00:00:00" and labels[-1] == "02:00:00" and len(labels) == 5
