"""The pure core: event types, decisions and folds. No I/O, no clock, no randomness."""

from aggregates.numeric import pin as _pin

_pin()  # decisions compute in one fixed decimal context (see aggregates/numeric.py)
