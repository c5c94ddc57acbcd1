"""``--report PATH``: one self-contained HTML file — inline SVG charts, no scripts, no network.

Charts: equity curve, drawdown, exposure over time, verdicts per layer. The trade table lists
every fill of the window with its causation chain, each link as position, event id and hash
prefix: fill -> order -> verdict -> signal -> tick (and the trade the fill executed against), so
an auditor can check any row in plain SQL (``WHERE position IN (...)``) against the chain.

Bounded memory: links are resolved through a window of the most recent events (a decision's
cause is never far behind it), open orders are kept until they finish, and the table holds at
most ``max_trades`` rows (the count of the rest is stated).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from replay.render import render
from replay.walk import Series, money, pct, stamp

if TYPE_CHECKING:
    from replay.session import PassResult
    from replay.whatif import Comparison
    from replay.window import Window

_RECENT = 20_000


@dataclass(frozen=True, slots=True)
class Link:
    """One event of a causation chain, as an auditor finds it in the ledger."""

    kind: str
    position: int
    event_id: str
    hash: str
    cause: int | None

    @classmethod
    def of(cls, fact: RecordedEvent, kind: str) -> Link:
        return cls(
            kind, fact.position, str(fact.event_id), fact.hash.hex()[:12], fact.causation_position
        )


@dataclass(slots=True)
class OrderTrail:
    order: Link
    intent: str
    verdict: Link | None
    signal: Link | None
    tick: Link | None


@dataclass(slots=True)
class TradeRow:
    at: str
    symbol: str
    side: str
    contracts: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str
    final: bool
    intent: str
    chain: list[Link]


class _Bounded(OrderedDict[Any, Any]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)


class ReportBuilder:
    """Feed it the window's events in order (``add``); then ``render``."""

    def __init__(self, *, max_trades: int = 5000) -> None:
        self.max_trades = max_trades
        self.trades: list[TradeRow] = []
        self.more_trades = 0
        self._recent: _Bounded = _Bounded(_RECENT)  # position -> Link of decisive inputs
        self._signal_tick: _Bounded = _Bounded(_RECENT)  # signal position -> tick link
        self._verdicts: _Bounded = _Bounded(_RECENT)  # (cause, symbol, intent) -> Link
        self._orders: dict[str, OrderTrail] = {}

    def add(self, fact: RecordedEvent) -> None:
        event = fact.event
        kind = type(event)
        if kind is ev.TradeTicked:
            self._recent.put(fact.position, Link.of(fact, "tick"))
        elif kind is ev.ClockTicked:
            self._recent.put(fact.position, Link.of(fact, "clock"))
        elif kind is ev.SignalGenerated:
            self._recent.put(fact.position, Link.of(fact, "signal"))
        elif kind is ev.RiskVerdictIssued:
            key = (fact.causation_position, event.symbol, event.intent)  # type: ignore[attr-defined]
            self._verdicts.put(key, Link.of(fact, "verdict"))
        elif kind is ev.OrderRequested:
            self._order(fact, event)  # type: ignore[arg-type]
        elif kind is ev.OrderFilled or kind is ev.OrderPartiallyFilled:
            self._fill(fact, event)  # type: ignore[arg-type]
        elif kind is ev.OrderRejected or kind is ev.OrderCancelled:
            self._orders.pop(event.client_order_id, None)  # type: ignore[attr-defined]

    def _order(self, fact: RecordedEvent, order: ev.OrderRequested) -> None:
        cause = self._recent.get(fact.causation_position)
        signal = cause if cause is not None and cause.kind == "signal" else None
        tick = None
        if signal is not None and signal.cause is not None:
            tick = self._recent.get(signal.cause)
        elif cause is not None and cause.kind == "tick":
            tick = cause
        verdict = self._verdicts.get((fact.causation_position, order.symbol, order.intent))
        self._orders[order.client_order_id] = OrderTrail(
            Link.of(fact, "order"), order.intent, verdict, signal, tick
        )

    def _fill(self, fact: RecordedEvent, fill: ev.OrderFilled | ev.OrderPartiallyFilled) -> None:
        final = type(fill) is ev.OrderFilled
        trail = self._orders.pop(fill.client_order_id, None) if final else None
        if trail is None:
            trail = self._orders.get(fill.client_order_id)
        if len(self.trades) >= self.max_trades:
            self.more_trades += 1
            return
        chain = [Link.of(fact, "fill")]
        if trail is not None:
            chain += [x for x in (trail.order, trail.verdict, trail.signal, trail.tick) if x]
        executed = self._recent.get(fact.causation_position)
        if executed is not None:
            chain.append(Link(f"executed on {executed.kind}", *_rest(executed)))
        self.trades.append(
            TradeRow(
                at=stamp(fill.at_ms),
                symbol=fill.symbol,
                side=fill.side,
                contracts=fill.contracts,
                price=fill.price,
                fee=fill.fee,
                liquidity=fill.liquidity,
                final=final,
                intent=trail.intent if trail is not None else "?",
                chain=chain,
            )
        )

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        window: Window,
        result: PassResult,
        comparison: Comparison | None = None,
        *,
        sections: Sequence[str] = (),
    ) -> str:
        """The page; ``sections`` are ready HTML parts added after the what-if (a sweep's)."""
        summary = result.summary
        tally = result.tally
        charts = [
            line_chart("equity", "Equity curve (USDT)", tally.equity, percent=False),
            line_chart("drawdown", "Drawdown from the day's peak (%)", tally.drawdown, True),
            line_chart("exposure", "Gross exposure (% of equity)", tally.exposure, True),
            bar_chart("verdicts", "Verdicts per layer / decision", dict(summary.verdicts)),
        ]
        verify = result.verify
        return render(
            "report.html.j2",
            css=Markup(_CSS),
            window=window.describe(),
            figures=[(str(k), str(v)) for k, v in summary.figures().items()],
            verify=None if verify is None else {"ok": verify.ok, "text": verify.render()},
            comparison=None if comparison is None else comparison.render(),
            sections=[Markup(section) for section in sections],
            charts=charts,
            trades=self.trades,
            more_trades=self.more_trades,
            max_trades=self.max_trades,
        )


def _rest(link: Link) -> tuple[int, str, str, int | None]:
    return link.position, link.event_id, link.hash, link.cause


# --------------------------------------------------------------------------- SVG

_W, _H, _PAD = 900, 260, 72


def line_chart(chart_id: str, title: str, series: Series, percent: bool) -> Markup:
    """A chart of a sampled series as a step line, inline SVG with time ticks and gridlines.

    Every series of the walk holds its value until the next sample (exposure and equity move at
    fills and marks, not in between), so it is drawn as steps: a straight line between two samples
    would show exposure ramping up through a period when it was flat, or zero.
    """
    points = series.points
    if not points:
        return render("line_chart.svg.j2", chart_id=chart_id, title=title, path="")
    scale = Decimal(100) if percent else Decimal(1)
    values = [float(v * scale) for _, v in points]
    times = [t for t, _ in points]
    low, high = min(values), max(values)
    if high == low:
        high, low = high + 1, low - 1
    t0, t1 = times[0], times[-1] if times[-1] > times[0] else times[0] + 1
    left, right, top, bottom = _PAD, _W - _PAD / 2, _PAD / 2, _H - _PAD / 2

    def x(t: int) -> float:
        return left + (t - t0) / (t1 - t0) * (right - left)

    def y(v: float) -> float:
        return bottom - (v - low) / (high - low) * (bottom - top)

    path = [f"M{x(times[0]):.1f},{y(values[0]):.1f}"]
    for t, v in zip(times[1:], values[1:], strict=True):
        path.append(f"H{x(t):.1f}V{y(v):.1f}")  # hold the value, then move at the new sample
    unit = " %" if percent else ""
    value_ticks, time_ticks = [], []
    for i in range(_TICKS + 1):
        value = low + (high - low) * i / _TICKS
        gy = y(value)
        value_ticks.append(
            {"y": f"{gy:.1f}", "label_y": f"{gy + 4:.1f}", "label": f"{value:.2f}{unit}"}
        )
        at = t0 + (t1 - t0) * i // _TICKS
        anchor = "start" if i == 0 else "end" if i == _TICKS else "middle"
        time_ticks.append(
            {"x": f"{x(at):.1f}", "anchor": anchor, "label": _tick_label(at, t1 - t0)}
        )
    return render(
        "line_chart.svg.j2",
        chart_id=chart_id,
        title=title,
        path="".join(path),
        width=_W,
        height=_H,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        value_ticks=value_ticks,
        time_ticks=time_ticks,
    )


_TICKS = 4
_DAY_MS = 86_400_000


def _tick_label(at_ms: int, span_ms: int) -> str:
    """A time tick: the date and minute over a long window, the second within one day."""
    text = stamp(at_ms)  # 2025-06-02T09:26:10.753Z
    return text[:16].replace("T", " ") if span_ms > _DAY_MS else text[11:19]


def bar_chart(chart_id: str, title: str, counts: dict[str, int]) -> Markup:
    """Horizontal bars, one per label, inline SVG."""
    top = max(counts.values(), default=0)
    row, label_width = 24, 260
    bars = []
    for i, (label, count) in enumerate(sorted(counts.items())):
        width = (count / top) * (_W - label_width - 80)
        bars.append(
            {
                "label": label,
                "count": count,
                "y": 5 + i * row,
                "width": f"{width:.1f}",
                "count_x": f"{label_width + width + 6:.1f}",
            }
        )
    return render(
        "bar_chart.svg.j2",
        chart_id=chart_id,
        title=title,
        bars=bars,
        width=_W,
        height=row * len(bars) + 10,
        row=row,
        label_width=label_width,
    )


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
table.summary th { background: #f4f4f4; }
.chart svg { width: 100%; max-width: 900px; border: 1px solid #eee; }
.axis { font-size: 11px; fill: #555; }
.grid { stroke: #eee; }
.chain { font-size: 0.9em; } .link { white-space: nowrap; }
.ok { color: #2a7a2a; } .failed { color: #b00020; }
code { font-size: 0.95em; }
"""

__all__ = ["Link", "ReportBuilder", "bar_chart", "line_chart", "money", "pct"]
