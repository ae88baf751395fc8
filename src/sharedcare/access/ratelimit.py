"""Failed sign-ins and token requests, counted per key (a client address, a username, a client id)
over a sliding minute, in memory in each server process.

Several processes each keep their own counts, so with N workers an attacker gets up to N times the
limit; the limit slows guessing, it does not replace strong passwords and secrets. Only failures
count, and a success resets nothing: a correct password must not wipe out an address's failures.

Keys are kept as hash prefixes, never as the usernames or addresses themselves.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("sharedcare.access")

WINDOW = 60.0
MAX_KEYS = 100_000  # beyond this the oldest keys are forgotten, so a flood cannot exhaust memory


def key(kind: str, value: str) -> str:
    """A counter key: the kind (ip, user, client) and a hash prefix of the value."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:16]}"


class RateLimiter:
    def __init__(self, limit: int, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until every key is under its limit again, or None when none is at it."""
        t = self.clock()
        wait = 0.0
        with self._lock:
            for k in keys:
                times = self._recent(k, t)
                if times is not None and len(times) >= self.limit:
                    wait = max(wait, times[len(times) - self.limit] + self.window - t)
        if wait <= 0:
            return None
        event = ",".join(k.partition(":")[0] for k in keys)
        log.warning("authentication rate limit reached (%s)", event)
        return max(1, math.ceil(wait))

    def failed(self, *keys: str) -> None:
        """Count one failure against each key."""
        t = self.clock()
        with self._lock:
            for k in keys:
                times = self._recent(k, t)
                if times is None:
                    if len(self._failures) >= MAX_KEYS:
                        self._failures.pop(next(iter(self._failures)))
                    times = self._failures[k] = deque()
                times.append(t)
                while len(times) > self.limit:  # older ones can no longer decide anything
                    times.popleft()

    def _recent(self, k: str, t: float) -> deque[float] | None:
        times = self._failures.get(k)
        if times is None:
            return None
        while times and times[0] <= t - self.window:
            times.popleft()
        if not times:
            del self._failures[k]
            return None
        return times
