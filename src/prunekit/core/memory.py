"""Peak resident memory of this process during a block (Linux: the kernel's exact high-water mark)."""

from __future__ import annotations

import threading


def _rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _reset_high_water_mark() -> bool:
    """Ask Linux to reset this process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _high_water_mark_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


_mark_lock = threading.Lock()
_mark_in_use = False  # an open PeakMemory block owns the kernel's high-water mark


class PeakMemory:
    """Peak resident memory (bytes) of this process during a `with` block.

    Exact where Linux lets a process reset its high-water mark (VmHWM); elsewhere a thread samples RSS
    every 5 ms as well, which can miss an allocation that lives shorter than one sample on a busy machine.
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self.start = 0
        self._stop = threading.Event()
        self._exact = False

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        global _mark_in_use
        self.start = self.peak = _rss_bytes()
        with _mark_lock:
            # a nested block must not reset the mark that an enclosing block reads at its end
            if not _mark_in_use and _reset_high_water_mark():
                self._exact = _mark_in_use = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        if self._exact:
            global _mark_in_use
            self.peak = max(self.peak, _high_water_mark_bytes())
            with _mark_lock:
                _mark_in_use = False
