"""One retry policy for every call to Milvus: exponential backoff, jitter, bounds.

Use :class:`RetryPolicy` around a call whose failure may pass (a server that
restarts, a rate limit, a timeout): the sink's upserts, and the launcher's
flush and row count at the end of a run. Do not use it around a call whose
failure is the answer (a wrong token, a missing collection, a refused row):
only errors that :func:`~transforms.milvus.client.error_kind` calls
``TRANSIENT`` are retried, every other error is raised at once.

Cost: nothing while calls succeed. A failing call is retried at most
``max_attempts`` times in all and for at most ``deadline_s`` seconds; the
``n``-th wait is drawn from ``[(1 - jitter) * b, b]`` with
``b = min(initial_backoff_s * 2 ** (n - 1), max_backoff_s)``, so that workers
that failed together do not retry together. With the defaults of
:class:`~transforms.config.WriteConfig` (8 attempts, 0.5 s doubling to 30 s,
300 s) a call gives up after about 30 to 60 s of waiting.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from transforms.config import ConfigError, WriteConfig
from transforms.milvus.client import TRANSIENT, error_kind

__all__ = ["RetryPolicy", "retry_reason"]

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

OnRetry = Callable[[BaseException, str, float], None]
"""Called before each wait with the error, its :func:`retry_reason` and the wait in seconds."""


def retry_reason(error: BaseException) -> str:
    """Names why a transient error happened, for counters and logs.

    Returns:
      ``rate_limited``, ``timeout`` or ``unavailable``.
    """
    message = str(getattr(error, "message", error)).lower()
    if "rate" in message or "limit" in message:
        return "rate_limited"
    if isinstance(error, TimeoutError) or "deadline" in message or "timeout" in message:
        return "timeout"
    return "unavailable"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a call to Milvus that failed for a while.

    Attributes:
      max_attempts: Attempts in all, the first one included; 1 never retries.
      initial_backoff_s: Longest first wait; each next one may be twice as long.
      max_backoff_s: Longest single wait.
      deadline_s: Longest time from the first attempt to the last retry: a wait
        that would end past it is not made, and the last error is raised.
      jitter: Fraction of each wait that is random, from 0 (none) to 1 (a wait
        is anywhere from 0 to its bound).
    """

    max_attempts: int = 8
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    deadline_s: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append(f"max_attempts={self.max_attempts!r} must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            problems.append(
                f"initial_backoff_s={self.initial_backoff_s!r} and "
                f"max_backoff_s={self.max_backoff_s!r} must not be negative"
            )
        if self.deadline_s <= 0:
            problems.append(f"deadline_s={self.deadline_s!r} must be positive")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter={self.jitter!r} must be from 0 to 1")
        if problems:
            raise ConfigError(f"retry policy: {'; '.join(problems)}.")

    @classmethod
    def from_config(cls, config: WriteConfig) -> RetryPolicy:
        """The policy that ``write.max_attempts``, ``write.*_backoff_s`` and
        ``write.retry_deadline_s`` describe."""
        return cls(
            max_attempts=config.max_attempts,
            initial_backoff_s=config.initial_backoff_s,
            max_backoff_s=config.max_backoff_s,
            deadline_s=config.retry_deadline_s,
        )

    def delays(self, uniform: Callable[[float, float], float] = random.uniform) -> Iterator[float]:
        """The waits before the 2nd, 3rd, … attempt: ``max_attempts - 1`` of them.

        Args:
          uniform: Draws a number between its two bounds (``random.uniform``;
            tests pass their own).
        """
        bound = self.initial_backoff_s
        for _ in range(self.max_attempts - 1):
            capped = min(bound, self.max_backoff_s)
            yield uniform(capped * (1 - self.jitter), capped)
            bound *= 2

    def call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        on_retry: OnRetry | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> T:
        """Calls ``fn`` until it returns, retrying transient errors within the bounds.

        Args:
          what: The call, for the warning logged before each retry
            (e.g. ``"Upsert of 512 rows into collection 'docs' at …"``).
          fn: The call; made again from scratch on each attempt.
          on_retry: Called before each wait (count the retry, drop a broken
            client); an error it raises ends the retries.
          clock, sleep, uniform: Time and chance; tests pass fakes.

        Returns:
          What ``fn`` returned.

        Raises:
          Exception: ``fn``'s error, at once if it is not transient, else the
            last one once the attempts or the deadline are spent.
        """
        deadline = clock() + self.deadline_s
        delays = self.delays(uniform)
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as e:
                if error_kind(e) != TRANSIENT:
                    raise
                delay = next(delays, None)
                if delay is None or clock() + delay > deadline:
                    raise
                reason = retry_reason(e)
                _LOGGER.warning(
                    "%s failed (%s, attempt %d of %d), retrying in %.1fs: %s",
                    what, reason, attempt, self.max_attempts, delay, e,
                )  # fmt: skip
                if on_retry is not None:
                    on_retry(e, reason, delay)
                sleep(delay)
