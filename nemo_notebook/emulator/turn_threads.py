"""The threads of a server's running chat turns: started off the event loop, and found again
when the server stops."""

from __future__ import annotations

import queue
import threading

__all__ = ["TurnThreads"]


class TurnThreads:
    """Every turn thread a server started; a launcher thread starts them for the event loop."""

    def __init__(self) -> None:
        self._turns: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._launches: queue.SimpleQueue[threading.Thread | None] = queue.SimpleQueue()
        self._launcher: threading.Thread | None = None
        self._launcher_closed = False

    def running(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._turns if t.is_alive()]

    def track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._turns = {t for t in self._turns if t.is_alive() or t.ident is None} | {thread}

    def launch(self, thread: threading.Thread) -> None:
        """Start a turn's thread without waiting for it (safe on the event loop).

        ``Thread.start()`` waits until the new thread runs, which under a burst of turns means
        waiting for the GIL; a launcher thread does that waiting instead of the event loop.
        """
        self.track(thread)
        with self._lock:
            if self._launcher_closed:
                thread.start()
                return
            if self._launcher is None:
                self._launcher = threading.Thread(
                    target=self._launch_queued, name="nemo-turn-launcher", daemon=True
                )
                self._launcher.start()
        self._launches.put(thread)

    def stop_launcher(self, timeout: float) -> None:
        """Start what is queued, then end the launcher; later turns start on their own."""
        with self._lock:
            launcher, self._launcher = self._launcher, None
            self._launcher_closed = True
        if launcher is not None:
            self._launches.put(None)
            launcher.join(timeout)

    def _launch_queued(self) -> None:
        while (thread := self._launches.get()) is not None:
            thread.start()
