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
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING, Any

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
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

    def html(self) -> str:
        return (
            f'<span class="link" title="event id {escape(self.event_id)}">{escape(self.kind)} '
            f"#{self.position} <code>{escape(self.event_id[:8])}</code> "
            f"<code>{escape(self.hash)}</code></span>"
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
        self, window: Window, result: PassResult, comparison: Comparison | None = None
    ) -> str:
        summary = result.summary
        tally = result.tally
        charts = [
            line_chart("equity", "Equity curve (USDT)", tally.equity, percent=False),
            line_chart("drawdown", "Drawdown from the day's peak (%)", tally.drawdown, True),
            line_chart("exposure", "Gross exposure (% of equity)", tally.exposure, True),
            bar_chart("verdicts", "Verdicts per layer / decision", dict(summary.verdicts)),
        ]
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            "<title>Claire de Binaire replay report</title>",
            f"<style>{_CSS}</style></head><body>",
            "<h1>Claire de Binaire: replay report</h1>",
            f"<p>{escape(window.describe())}</p>",
            _summary_table(summary.figures()),
        ]
        if result.verify is not None:
            verify = result.verify
            status = "ok" if verify.ok else "FAILED"
            parts.append(
                f'<h2>Verification: <span class="{status.lower()}">{status}</span></h2>'
                f"<pre>{escape(verify.render())}</pre>"
            )
        if comparison is not None:
            parts.append(f"<h2>What-if</h2><pre>{escape(comparison.render())}</pre>")
        parts += charts
        parts.append(self._table())
        parts.append("</body></html>")
        return "\n".join(parts)

    def _table(self) -> str:
        rows = []
        for trade in self.trades:
            chain = " &larr; ".join(link.html() for link in trade.chain)
            positions = ", ".join(str(link.position) for link in trade.chain)
            rows.append(
                "<tr>"
                f"<td>{escape(trade.at)}</td><td>{escape(trade.symbol)}</td>"
                f"<td>{escape(trade.side)}</td><td>{escape(trade.intent)}</td>"
                f"<td>{trade.contracts}</td><td>{trade.price}</td><td>{trade.fee}</td>"
                f"<td>{escape(trade.liquidity)}{'' if trade.final else ' (partial)'}</td>"
                f'<td class="chain">{chain}<br><code>WHERE position IN ({positions})</code></td>'
                "</tr>"
            )
        more = (
            f"<p>{self.more_trades} more fills not shown (limit {self.max_trades}).</p>"
            if self.more_trades
            else ""
        )
        return (
            '<h2 id="trades">Trades</h2>'
            '<table class="trades"><thead><tr><th>time (UTC)</th><th>symbol</th><th>side</th>'
            "<th>intent</th><th>contracts</th><th>price</th><th>fee</th><th>liquidity</th>"
            "<th>causation: fill &larr; order &larr; verdict &larr; signal &larr; tick</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
            + ("" if rows else "<p>No fills in the window.</p>")
        )


def _rest(link: Link) -> tuple[int, str, str, int | None]:
    return link.position, link.event_id, link.hash, link.cause


def _summary_table(figures: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in figures.items()
    )
    return f'<table class="summary">{rows}</table>'


# --------------------------------------------------------------------------- SVG

_W, _H, _PAD = 900, 260, 72


def line_chart(chart_id: str, title: str, series: Series, percent: bool) -> str:
    """A chart of a sampled series as a step line, inline SVG with time ticks and gridlines.

    Every series of the walk holds its value until the next sample (exposure and equity move at
    fills and marks, not in between), so it is drawn as steps: a straight line between two samples
    would show exposure ramping up through a period when it was flat, or zero.
    """
    points = series.points
    head = f'<h2>{escape(title)}</h2><figure id="chart-{chart_id}" class="chart">'
    if not points:
        return head + "<p>No data in the window.</p></figure>"
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
    grid = []
    for i in range(_TICKS + 1):
        value = low + (high - low) * i / _TICKS
        gy = y(value)
        grid.append(
            f'<line x1="{left}" y1="{gy:.1f}" x2="{right}" y2="{gy:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{gy + 4:.1f}" class="axis" text-anchor="end">'
            f"{value:.2f}{unit}</text>"
        )
        at = t0 + (t1 - t0) * i // _TICKS
        gx = x(at)
        anchor = "start" if i == 0 else "end" if i == _TICKS else "middle"
        grid.append(
            f'<line x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{bottom}" class="grid"/>'
            f'<text x="{gx:.1f}" y="{_H - 4}" class="axis" text-anchor="{anchor}">'
            f"{escape(_tick_label(at, t1 - t0))}</text>"
        )
    return (
        head + f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}">'
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fff"/>'
        + "".join(grid)
        + f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>'
        f'<path d="{"".join(path)}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>'
        "</svg></figure>"
    )


_TICKS = 4
_DAY_MS = 86_400_000


def _tick_label(at_ms: int, span_ms: int) -> str:
    """A time tick: the date and minute over a long window, the second within one day."""
    text = stamp(at_ms)  # 2025-06-02T09:26:10.753Z
    return text[:16].replace("T", " ") if span_ms > _DAY_MS else text[11:19]


def bar_chart(chart_id: str, title: str, counts: dict[str, int]) -> str:
    """Horizontal bars, one per label, inline SVG."""
    head = f'<h2>{escape(title)}</h2><figure id="chart-{chart_id}" class="chart">'
    if not counts:
        return head + "<p>No verdicts in the window.</p></figure>"
    items = sorted(counts.items())
    top = max(counts.values())
    row = 24
    height = row * len(items) + 10
    label_w = 260
    bars = []
    for i, (label, count) in enumerate(items):
        width = (count / top) * (_W - label_w - 80)
        y = 5 + i * row
        bars.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" class="axis">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" '
            'fill="#c0504d"/>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 16}" class="axis">{count}</text>'
        )
    return (
        head + f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" role="img" '
        f'aria-label="{escape(title)}">{"".join(bars)}</svg></figure>'
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
