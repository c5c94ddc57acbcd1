"""The pure core: event types, decisions and folds. No I/O, no clock, no randomness."""
