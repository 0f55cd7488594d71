"""`gateway-dbt`: dbt, but it dies with the process that started it.

dagster-dbt runs dbt as a subprocess. When the run worker is killed (kill -9, an OOM kill, a lost
container), that dbt carried on alone, holding its locks and writing tables nobody waits for. This
shim asks Linux to send it SIGTERM when its parent dies (PR_SET_PDEATHSIG, which survives exec), then
becomes the venv's dbt. Elsewhere it is plain dbt.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask for SIGTERM when the parent exits. False where the kernel has no such thing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the parent died before the request: nobody is waiting for us
        sys.exit(1)
    return True


def hear_sigterm() -> None:
    """SIGTERM at its default action and unblocked. An ignored or blocked signal is inherited through
    fork and exec, so a parent that ignored or masked SIGTERM (some libraries do, around their own
    spawns) would leave the death signal with no effect."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def exec_dying_with_parent(argv: list[str]) -> None:
    hear_sigterm()
    die_with_parent()
    os.execvp(argv[0], argv)


def main() -> None:
    real = Path(sys.executable).with_name("dbt")
    exec_dying_with_parent([str(real) if real.exists() else "dbt", *sys.argv[1:]])


if __name__ == "__main__":
    main()
