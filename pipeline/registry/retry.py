"""Bounded retries: which failures are transient, exponential backoff with jitter,
``Retry-After``. Pure apart from sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries of a request; waits base * 2**n (jittered, capped at
    ``max_delay``) between them, and never more than ``budget`` seconds in total."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    budget: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RetryPolicy:
        text = environ.get("PIPELINE_REGISTRY_RETRIES", "")
        if text.isdigit() and int(text) >= 1:
            return cls(attempts=int(text))
        return cls()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = min(self.max_delay, self.base_delay * (2**attempt))
        wait *= 0.75 + random.random() / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return float(wait)


class Backoff:
    """One operation's retry state."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempt = 0
        self.waited = 0.0

    def next(self, retry_after: float | None = None) -> bool:
        """Sleep before another try and return True, or False when out of tries."""
        self.attempt += 1
        if self.attempt >= self.policy.attempts:
            return False
        wait = self.policy.delay(self.attempt - 1, retry_after)
        if self.waited + wait > self.policy.budget:
            return False
        time.sleep(wait)
        self.waited += wait
        return True


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds, when it is a number."""
    value = headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
Body = bytes | Callable[[], Iterable[bytes]] | None
