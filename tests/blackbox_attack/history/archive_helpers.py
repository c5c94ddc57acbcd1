"""What the archive attacks share: the files an archive holds, and ways to damage them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.blackbox_attack.history.conftest import no_traceback, run


def parquets(directory: Path) -> list[Path]:
    return sorted(directory.glob("events_p*.parquet"))


def manifests(directory: Path) -> list[Path]:
    return sorted(directory.glob("events_p*.manifest.json"))


async def verify_fails(ledger, directory: Path, name: str) -> str:
    rows = await ledger.rows()
    result = await run(ledger.url, "verify", "--archive", str(directory))
    no_traceback(result)
    assert result.code == 1, result.text
    assert name in result.text, result.text
    assert await ledger.rows() == rows
    return result.text


def lie(manifest: Path, key: str, value: object) -> None:
    data = json.loads(manifest.read_text())
    assert key in data, sorted(data)
    data[key] = value
    manifest.write_text(json.dumps(data))


def non_utf8(target: Path) -> None:
    data = bytearray(target.read_bytes())
    data[data.index(b'"sha256"') + 20] = 0xE6
    target.write_bytes(bytes(data))
