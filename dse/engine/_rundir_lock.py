"""One driver per run directory: `dse run` and `dse resume` hold an exclusive lock on RUN_DIR/.driver.lock.

Two drivers on one run directory would both submit the same pending trials (work run twice, rows
doubled). The lock is a kernel file lock (flock), so a driver that died, however it died, holds none: a
stale lock file is just a file, and the next `dse resume` takes it over. The file names the holder's PID.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dse.errors import InputError

__all__ = ["LOCK_FILE", "RunDirLock"]

LOCK_FILE = ".driver.lock"


class RunDirLock:
    """Held from construction until `release()` or the process ends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise InputError(f"another dse driver (PID {holder}) is running this sweep; wait for it to end or "
                             "stop it, then `dse resume`", file=str(run_dir)) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
