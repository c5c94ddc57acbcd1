"""Fixtures of the sweep attack (built in ``sweep_helpers``)."""

from tests.blackbox_attack.sweeps.sweep_helpers import (
    head_of,
    ledger,
    mirrored_ledger,
    reconfigured_ledger,
)

__all__ = ["head_of", "ledger", "mirrored_ledger", "reconfigured_ledger"]
