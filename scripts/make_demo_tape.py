"""Regenerate the bundled demo tape and its contract specs (deterministic: same seed, same tape).

.venv/bin/python scripts/make_demo_tape.py [--seed N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.mexc import tape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=tape.DEMO_SEED)
    parser.add_argument("--out", type=Path, default=tape.DEMO_TAPE)
    parser.add_argument("--specs", type=Path, default=tape.DEMO_SPECS)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = tape.write_tape(args.out, tape.generate_tape(seed=args.seed))
    args.specs.write_text(json.dumps(tape.contract_specs_document(), indent=2) + "\n")
    print(
        f"wrote {count} lines to {args.out} ({args.out.stat().st_size} bytes), "
        f"specs to {args.specs}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
