"""The start check, and the workers a reload keeps until it passes.

After :meth:`Supervisor.run` starts and after each reload, the master waits
until every worker is up and has stayed up ``start_check`` seconds (ready),
or until one exits first (failed, with its last reported error). The
workers a reload replaced serve on meanwhile, group by group: they are asked
to drain once their own group's replacements stayed up, so a group that
came up is not held back by another that cannot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brim.supervisor.pool import Child, Pool

__all__ = ["Failed", "ReplacedWorkers", "StartCheck"]


@dataclass(frozen=True)
class Failed:
    """A start check's failure: the worker that exited, and its error."""

    group: str
    worker_id: int
    error: str


class StartCheck:
    """One start check at a time: :meth:`begin`, then :meth:`tick` until a verdict."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        #: When the running check began (monotonic); None if none runs.
        self.began: float | None = None
        self.failed: Failed | None = None

    @property
    def running(self) -> bool:
        return self.began is not None

    def begin(self) -> None:
        self.began = time.monotonic()
        self.failed = None

    def end(self) -> None:
        self.began = None

    def note_exit(self, child: Child, how: str) -> None:
        """A worker exited before it was meant to: the first one fails the check."""
        if self.began is not None and self.failed is None:
            error = child.last_error or f"worker {child.group} {child.worker_id} exited with {how}"
            self.failed = Failed(child.group, child.worker_id, error)

    def tick(self, now: float) -> Failed | bool:
        """The verdict, once: a :class:`Failed`, True when every group stayed up,
        False while there is none yet (or no check runs)."""
        if self.began is None:
            return False
        if self.failed is not None:
            self.began = None
            return self.failed
        if not all(self.pool.stayed_up(name, now) for name in self.pool.groups):
            return False
        self.began = None
        return True


class ReplacedWorkers:
    """Drains the workers a reload kept (standby), once their replacements stayed up."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def tick(self, now: float) -> None:
        """Drain the workers a reload kept, group by group, once their replacements
        are up and stayed up start_check seconds (or at once if nothing replaces
        them, unless they are held): a group that came up is not held back by
        another that cannot."""
        pool = self.pool
        standby = [c for c in pool.children.values() if c.standby and not c.retired]
        for name in {c.group for c in standby}:
            mine = [c for c in standby if c.group == name]
            if name in pool.groups and not pool.stayed_up(name, now):
                continue
            if name not in pool.groups and any(c.held for c in mine):
                continue
            for child in mine:
                pool.retire(child)
            pool.log.info("%s: %s: %d replaced worker(s) asked to drain", pool.name, name,
                          len(mine))
