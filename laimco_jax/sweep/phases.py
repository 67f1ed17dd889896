"""Phase time stamps of a sweep, for ``benchmarks/bench_sweep.py`` (off unless asked for).

With the environment variable ``LAIMCO_SWEEP_PHASES=FILE`` set, :func:`mark` records ``(phase,
time.time())`` pairs and the process writes them to ``FILE`` (JSON, a list of pairs) when it exits;
otherwise :func:`mark` does nothing. Wall-clock stamps (not ``perf_counter``), so that the caller can
set them against the moment it started the process.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time

_FILE = os.environ.get("LAIMCO_SWEEP_PHASES")
_STAMPS: list[tuple[str, float]] = []


def mark(phase: str) -> None:
    """Record that ``phase`` ends now (only with ``LAIMCO_SWEEP_PHASES`` set)."""
    if _FILE:
        _STAMPS.append((phase, time.time()))


def write() -> None:
    """Write the stamps to ``LAIMCO_SWEEP_PHASES`` now (also done at exit; nothing without it). A file
    that cannot be written gets a one-line warning on stderr: the sweep itself is done by then."""
    if _FILE:
        try:
            with open(_FILE, "w") as f:
                json.dump(_STAMPS, f)
        except OSError as error:
            print(f"laimco: warning: LAIMCO_SWEEP_PHASES={_FILE}: phase stamps not written: {error.strerror or error}",
                  file=sys.stderr)


if _FILE:
    atexit.register(write)
