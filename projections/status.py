"""``claire status``: positions, exposure, drawdown and trading state, from the read models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from projections.postgres import PostgresSink


@dataclass(frozen=True)
class PositionLine:
    symbol: str
    direction: str
    contracts: Decimal
    average_entry: Decimal
    mark: Decimal
    notional: Decimal
    unrealised_pnl: Decimal
    realised_pnl: Decimal


@dataclass(frozen=True)
class ProjectionLine:
    projection: str
    position: int
    generation: int
    behind: int
    event_recorded_at: datetime | None


@dataclass(frozen=True)
class StatusReport:
    """A snapshot of the read models; ``render()`` is what the CLI prints."""

    positions: tuple[PositionLine, ...]
    equity: Decimal | None
    cash: Decimal | None
    gross_notional: Decimal | None
    exposure_ratio: Decimal | None
    day: date | None
    day_start_equity: Decimal | None
    day_peak_equity: Decimal | None
    drawdown: Decimal | None
    max_drawdown: Decimal | None
    trading_state: str
    trading_state_reason: str | None
    trading_state_since: datetime | None
    halts: int
    projections: tuple[ProjectionLine, ...]

    def render(self) -> str:
        lines = [f"trading state: {self.trading_state}"]
        if self.trading_state_reason is not None:
            lines[0] += f" ({self.trading_state_reason}, since {self.trading_state_since})"
        lines.append(f"halts so far: {self.halts}")
        if self.equity is None:
            lines.append("equity: (no portfolio events projected yet)")
        else:
            lines.append(
                f"equity: {_money(self.equity)} USDT   cash: {_money(self.cash)} USDT   "
                f"gross notional: {_money(self.gross_notional)} USDT"
            )
            lines.append(f"exposure: {_pct(self.exposure_ratio)} of equity")
        if self.day is not None:
            lines.append(
                f"day {self.day}: start {_money(self.day_start_equity)}  peak "
                f"{_money(self.day_peak_equity)}  drawdown {_pct(self.drawdown)}  "
                f"(deepest {_pct(self.max_drawdown)})"
            )
        if self.positions:
            lines.append("positions:")
            header = ("symbol", "side", "contracts", "entry", "mark", "notional", "unrealised")
            rows = [header] + [
                (
                    p.symbol,
                    p.direction,
                    str(p.contracts),
                    _money(p.average_entry, 6),
                    _money(p.mark, 6),
                    _money(p.notional),
                    _money(p.unrealised_pnl),
                )
                for p in self.positions
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
            lines += [
                "  " + "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows
            ]
        else:
            lines.append("positions: none open")
        lines.append("projections:")
        for p in self.projections:
            lines.append(
                f"  {p.projection:<10} at position {p.position} (generation {p.generation}), "
                f"{p.behind} events behind the ledger head"
            )
        return "\n".join(lines)


def _money(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value.quantize(Decimal(1).scaleb(-places)):,}"


def _pct(ratio: Decimal | None) -> str:
    if ratio is None:
        return "-"
    return f"{(ratio * 100).quantize(Decimal('0.01'))}%"


async def status(database_url: str) -> StatusReport:
    """Read the status from the read-model views (never from in-memory state)."""
    sink = await PostgresSink.connect(database_url, as_projector=False)
    try:
        found = await sink.status_rows()
    finally:
        await sink.close()
    exposure = found["exposure"][0] if found["exposure"] else None
    today = found["today"][0] if found["today"] else None
    state = found["trading_state"][0] if found["trading_state"] else None
    return StatusReport(
        positions=tuple(PositionLine(**dict(r)) for r in found["positions"]),
        equity=exposure["equity"] if exposure else None,
        cash=exposure["cash"] if exposure else None,
        gross_notional=exposure["gross_notional"] if exposure else None,
        exposure_ratio=exposure["exposure_ratio"] if exposure else None,
        day=today["day"] if today else None,
        day_start_equity=today["start_equity"] if today else None,
        day_peak_equity=today["peak_equity"] if today else None,
        drawdown=today["drawdown"] if today else None,
        max_drawdown=today["max_drawdown"] if today else None,
        trading_state=state["state"] if state else "ACTIVE",
        trading_state_reason=state["reason"] if state else None,
        trading_state_since=state["at"] if state else None,
        halts=int(found["halts"][0][0]),
        projections=tuple(
            ProjectionLine(
                projection=r["projection"],
                position=r["position"],
                generation=r["generation"],
                behind=max(0, r["head"] - r["position"]),
                event_recorded_at=r["event_recorded_at"],
            )
            for r in found["checkpoints"]
        ),
    )
