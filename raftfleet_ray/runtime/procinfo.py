"""What a runtime process costs, read from /proc (Linux): for operators and benchmarks."""

from __future__ import annotations

import os


def process_info() -> dict[str, int]:
    """pid, RSS and USS (bytes) and CPU time used so far (µs, user + system) of this process."""
    info = {"pid": os.getpid(), "rss": 0, "uss": 0, "cpu_us": 0}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Private_Clean", "Private_Dirty"):
                    kb = int(rest.split()[0]) * 1024
                    info["rss" if key == "Rss" else "uss"] += kb
    except OSError:
        pass
    t = os.times()
    info["cpu_us"] = int((t.user + t.system) * 1e6)
    return info
