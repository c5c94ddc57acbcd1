"""Read the process environment and an optional ``.env`` file into one plain mapping.

The only module that touches ``os.environ``; everything else receives the mapping, so tests and
what-if runs pass their own values and nothing reads configuration behind anyone's back.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values


def load_environment(dotenv_path: Path | None = None) -> dict[str, str]:
    """Values from ``.env`` (if present), overridden by the real environment."""
    path = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    merged: dict[str, str] = {}
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged
