"""Process lifetime plumbing: tie a child process's life to its parent's.

A worker or a local-stack child calls :func:`die_with_parent` first thing after the
fork (or as a ``subprocess.Popen`` ``preexec_fn``), so a parent that dies, even by
SIGKILL, never leaves it behind as an orphan::

    from feedrank.core.process_lifetime import die_with_parent

    def worker_main() -> None:
        die_with_parent()
        ...

Linux only: it asks the kernel through ``prctl(PR_SET_PDEATHSIG)``.
"""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask the kernel to SIGTERM this process when its parent exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
