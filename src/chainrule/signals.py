"""Ctrl-C and SIGTERM while chainrule stops: the one place that turns them off."""

from __future__ import annotations

import signal
import threading


def ignore_interrupts() -> None:
    """Ignore further Ctrl-C and SIGTERM: once a command is stopping (saving a run, printing its one line),
    a second signal would only interrupt that. Signal handlers belong to the main thread; elsewhere this
    does nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
