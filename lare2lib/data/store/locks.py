"""One lock per (store, writer) and process: a second live process under one writer is refused.

The lock is an advisory ``flock`` on ``.lock`` (main writer) or ``.lock-<writer>`` in the store
folder, holding the owner's pid; instances in one process share it (counted).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lare2lib.data.store.errors import StoreLockedError

try:  # POSIX advisory locks; elsewhere a second writer is not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["acquire_lock", "release_lock"]

_LOCKS: dict[tuple[str, str], list[int]] = {}
"""(store folder, writer tag) → [fd, users] of the locks this process holds."""
_LOCKS_GUARD = threading.Lock()


def acquire_lock(folder: Path, tag: str) -> tuple[str, str]:
    """Take (or share, within this process) the lock of writer ``tag`` on the store ``folder``;
    returns the key to :func:`release_lock`. Raises :class:`StoreLockedError` when another
    process holds it."""
    key = (str(folder.resolve()), tag)
    with _LOCKS_GUARD:
        if key in _LOCKS:
            _LOCKS[key][1] += 1
            return key
        fd = os.open(folder / f".lock{'' if tag == 'main' else '-' + tag}", os.O_RDWR | os.O_CREAT,
                     0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise StoreLockedError(
                    f"feature store {folder} is being written by another process (pid {holder}) "
                    f"as writer {tag!r}; wait for it, or give this run another writer name "
                    "(a distributed run names each process's writer itself)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _LOCKS[key] = [fd, 1]
    return key


def release_lock(key: tuple[str, str]) -> None:
    """Drop one use of the lock ``key``; the last use closes (and so releases) it."""
    with _LOCKS_GUARD:
        entry = _LOCKS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _LOCKS[key]
            os.close(entry[0])  # closing the descriptor releases the flock
