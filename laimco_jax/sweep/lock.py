"""The lock file ``STORE.lock`` that keeps two sweeps from writing one store."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from laimco_jax.params import ConfigError
from laimco_jax.sweep.spec import os_reason

#: A running sweep touches its lock file this often [s]; another host's lock untouched for
#: LOCK_STALE_S [s] is stale (its process was killed).
LOCK_HEARTBEAT_S = 30.0
LOCK_STALE_S = 600.0


@contextlib.contextmanager
def store_lock(store: Path):
    """Hold the lock file ``STORE.lock`` (next to the store: JSON of this process's pid and host) while
    writing ``store``, touching it every :data:`LOCK_HEARTBEAT_S`. Another live holder: ConfigError
    naming it. A dead holder left a stale lock, which is taken over: a process of this host that no
    longer runs, or one of another host whose lock went untouched for :data:`LOCK_STALE_S` (a job
    killed on one node and resumed on another).
    """
    lock = store.with_name(store.name + ".lock")
    _take_lock(lock, store)
    stop = threading.Event()
    heartbeat = threading.Thread(target=_touch_until, args=(lock, stop), daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join()
        lock.unlink(missing_ok=True)


def _touch_until(lock: Path, stop: threading.Event) -> None:
    """Refresh the lock's modification time every LOCK_HEARTBEAT_S until ``stop`` is set."""
    while not stop.wait(LOCK_HEARTBEAT_S):
        with contextlib.suppress(OSError):
            os.utime(lock)


def _take_lock(lock: Path, store: Path) -> None:
    """Create ``lock`` holding this process's pid and host, taking over a stale one (see :func:`store_lock`)."""
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    mine = lock.with_name(f"{lock.name}.{me['pid']}")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        mine.write_text(json.dumps(me))
        for _ in range(2):  # the second after removing a stale lock
            try:
                os.link(mine, lock)  # atomic, fails if the lock exists: the lock never lacks its holder
                return
            except FileExistsError:
                holder = _lock_holder(lock)
                if _holder_alive(holder, lock):
                    break
                lock.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--out {str(store)!r}: cannot write in {str(lock.parent)!r} ({os_reason(exc)}); choose a writable directory"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            mine.unlink(missing_ok=True)
    raise ConfigError(
        f"--out {str(store)!r} is being written by another sweep: process {holder.get('pid', '?')} on host "
        f"{holder.get('host', '?')} (lock file {lock}); wait for it, or remove the lock file if that process is gone"
    )


def _lock_holder(lock: Path) -> dict[str, Any]:
    """The ``{"pid", "host"}`` in a lock file ({} if unreadable)."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _holder_alive(holder: Mapping[str, Any], lock: Path) -> bool:
    """False for an unreadable lock, a process of this host that no longer runs, and a process of
    another host (which cannot be asked) whose lock is older than LOCK_STALE_S."""
    pid = holder.get("pid")
    if not holder:
        return False  # unreadable (the lock is written whole, so never while being taken)
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        try:
            return time.time() - lock.stat().st_mtime < LOCK_STALE_S
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
