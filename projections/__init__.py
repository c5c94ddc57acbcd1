"""Read models: pure folds over the ledger, kept in memory and in PostgreSQL (``readmodel``).

``rebuild(database_url, name=None)`` and ``status(database_url)`` back ``claire projections
rebuild`` and ``claire status``; :class:`Projector` is the live service.
"""

from projections.core import Projection, Runner, Table, fold
from projections.projector import (
    ALL_PROJECTIONS,
    CheckpointMoved,
    Lag,
    Projector,
    Rebuilt,
    UnknownProjection,
    rebuild,
    select,
)
from projections.status import StatusReport, status

__all__ = [
    "ALL_PROJECTIONS",
    "CheckpointMoved",
    "Lag",
    "Projection",
    "Projector",
    "Rebuilt",
    "Runner",
    "StatusReport",
    "Table",
    "UnknownProjection",
    "fold",
    "rebuild",
    "select",
    "status",
]
