"""The risk manager: six protection layers in binding order, plus pre-trade guards.

``RiskMachine`` (machine name ``risk``) is the public entry point; see
:mod:`aggregates.risk.machine` for the layers and :mod:`aggregates.risk.entry` for sizing.
"""

from aggregates.risk.entry import EntryDecision, decide_entry
from aggregates.risk.machine import OWNED, RiskMachine
from aggregates.risk.state import ENTRY_CHECK_ORDER, Limits, PendingOrder, RiskState

__all__ = [
    "ENTRY_CHECK_ORDER",
    "OWNED",
    "EntryDecision",
    "Limits",
    "PendingOrder",
    "RiskMachine",
    "RiskState",
    "decide_entry",
]
