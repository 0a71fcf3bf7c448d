"""Whether an ingestion run that ran to its end did what was asked.

A run can end without an error and still fail its user: every record it read
was rejected, or too many were. :func:`check_outcome` says so with one line
(a :class:`RunFailedError`), and the entry point exits with
:data:`RUN_FAILED_STATUS`, so that a script or a scheduler sees it:

* a run that read records and wrote none fails;
* a run whose dead letters are over ``--max_dead_letters`` (a count, or a
  fraction of the records read) fails;
* a sync that read no document, and so held back deleting its scope's
  documents (no ``--allow_empty_scope``), fails.

In a sync, documents skipped as unchanged, and documents deleted as gone,
count as done: a sync of an unchanged corpus writes nothing and succeeds, even
with records it dead-letters every time (a duplicate id, a binary file).

The limit is a :class:`DeadLetterLimit`; ``--max_dead_letters`` or the
config's top-level ``max_dead_letters`` key set it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping

import fsspec

from transforms.config import ConfigError

__all__ = [
    "EMPTY_SCOPE",
    "NOTHING_WRITTEN",
    "OK",
    "RUN_FAILED_STATUS",
    "TOO_MANY_DEAD_LETTERS",
    "DeadLetterLimit",
    "RunFailedError",
    "check_outcome",
]

RUN_FAILED_STATUS = 3
"""Exit status of a run that ended but failed: it wrote nothing, or dead-lettered too much."""

OK = "ok"
NOTHING_WRITTEN = "nothing_written"
TOO_MANY_DEAD_LETTERS = "too_many_dead_letters"
EMPTY_SCOPE = "empty_scope"


class RunFailedError(RuntimeError):
    """The run ended, but did not do what was asked; the message says why.

    Attributes:
      outcome: :data:`NOTHING_WRITTEN`, :data:`TOO_MANY_DEAD_LETTERS` or
        :data:`EMPTY_SCOPE`.
    """

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclasses.dataclass(frozen=True)
class DeadLetterLimit:
    """How many dead letters a run may have and still succeed.

    Exactly one of ``count`` and ``fraction`` is set.

    Attributes:
      count: At most this many dead letters.
      fraction: At most this fraction of the records read (``0.05``: 5%).
    """

    count: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.fraction is None):
            raise ConfigError("max_dead_letters: give a count (100) or a fraction (0.05).")

    @classmethod
    def parse(cls, value: object, where: str = "--max_dead_letters") -> DeadLetterLimit:
        """A limit from a flag or config value: ``100``, ``0.05`` or ``5%``.

        A whole number is a count; a number with a point, from 0 to 1, or a
        percentage, is a fraction of the records read.

        Raises:
          ConfigError: the value is neither.
        """
        text = str(value).strip()
        fix = (
            f"{where}={value!r}: give a count of dead letters (100), or a fraction of the "
            "records read, from 0 to 1 (0.05) or as a percentage (5%)."
        )
        if isinstance(value, bool):
            raise ConfigError(fix)
        try:
            if text.endswith("%"):
                fraction = float(text[:-1]) / 100
            elif isinstance(value, int) or text.isdigit():
                return cls(count=int(text))
            else:
                fraction = float(text)
        except ValueError:
            raise ConfigError(fix) from None
        if not 0 <= fraction <= 1 or math.isnan(fraction):
            raise ConfigError(fix)
        return cls(fraction=fraction)

    def allowed(self, records_read: int) -> int:
        """Dead letters allowed for a run that read ``records_read`` records."""
        if self.count is not None:
            return self.count
        return math.floor((self.fraction or 0.0) * records_read)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.fraction:g} of the records read"


def _first_dead_letter(dead_letter_path: str) -> str:
    """`` (first: <where>: <reason>)`` from the run's dead-letter files, or ''."""
    try:
        fs, prefix = fsspec.core.url_to_fs(dead_letter_path)
        for path in sorted(fs.glob(prefix + "*")):
            with fs.open(path, "r", encoding="utf-8") as f:
                line = f.readline()
            if line.strip():
                letter = json.loads(line)
                return f" (first: {letter.get('source', '?')}: {letter.get('reason', '?')})"
    except (OSError, ValueError):  # the line is said without it
        pass
    return ""


def check_outcome(
    report: Mapping[str, object], limit: DeadLetterLimit | None, dead_letter_path: str
) -> RunFailedError | None:
    """Whether the run failed, from its report's counts; None if it did what was asked.

    Records read are the documents read plus the records the read stage
    dead-lettered. A run that read some and wrote no row failed; so did one
    with more dead letters than ``limit`` allows.

    Args:
      report: The run's report (``documents_read``, ``written``,
        ``dead_lettered``, ``dead_letters_by_stage``).
      limit: The dead-letter limit, if any.
      dead_letter_path: The prefix of the run's dead-letter files, named in
        the message, whose first letter is quoted.
    """
    by_stage = report.get("dead_letters_by_stage")
    if not isinstance(by_stage, Mapping):
        by_stage = {}
    read = int(str(report.get("documents_read", 0))) + int(by_stage.get("read", 0))
    written = int(str(report.get("written", 0)))
    dead = int(str(report.get("dead_lettered", 0)))
    sync = report.get("sync")
    sync = sync if isinstance(sync, Mapping) else {}
    # In a sync, documents found unchanged, or deleted as gone, are work done as rows written are.
    done = int(sync.get("documents_unchanged", 0)) + int(sync.get("documents_deleted", 0))
    where = f"dead letters in {dead_letter_path}-*.jsonl"
    refused = int(sync.get("deletes_refused", 0))
    if refused:
        return RunFailedError(
            f"read no document, so the {refused} document{'s' if refused != 1 else ''} of scope "
            f"{sync.get('scope')!r} were not deleted: check the inputs, or pass "
            "--allow_empty_scope (write.allow_empty_scope: true) to empty the scope",
            EMPTY_SCOPE,
        )
    if written == 0 and not done and (read or dead):
        return RunFailedError(
            f"read {read} record{'s' if read != 1 else ''} and wrote none: {dead} dead-lettered"
            f"{_first_dead_letter(dead_letter_path)}; {where}",
            NOTHING_WRITTEN,
        )
    if limit is not None and dead > limit.allowed(read):
        return RunFailedError(
            f"{dead} dead letters of {read} records read, over --max_dead_letters={limit} "
            f"(allowed: {limit.allowed(read)}); {written} rows were written"
            f"{_first_dead_letter(dead_letter_path)}; {where}",
            TOO_MANY_DEAD_LETTERS,
        )
    return None
