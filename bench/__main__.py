"""Run the benchmarks: ``python -m bench`` (all) or ``python -m bench relay join ...``.

``python -m bench soak [--minutes 5] [--visits 200] [--database postgresql|sqlite]`` runs
the 5-minute soak (bench/soak.py) on its own: it is not part of "all"; neither is
``python -m bench transports``, the bare-relay comparison of WebSocket stacks.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

ALL = ["relay", "capacity", "join", "escalation", "pages", "device"]


def main(argv: list[str]) -> int:
    if argv[:1] == ["soak"]:
        from bench import soak

        return soak.main(argv[1:])
    names = argv or ALL
    unknown = [n for n in names if n not in [*ALL, "transports"]]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}")
        return 2
    failed = []
    for name in names:
        started = time.monotonic()
        print(f"=== {name}", flush=True)
        try:
            importlib.import_module(f"bench.{name}").run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
