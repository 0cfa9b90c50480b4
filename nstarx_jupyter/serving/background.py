"""One asyncio task a server component runs for its lifetime: started once, cancelled on close.

Resource sampling, the per-minute rollups, drift sampling and the importance refresh each run a
loop beside the server; this is their shared start and stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["LoopTask"]


class LoopTask:
    """Runs `run()` as a task of the running event loop, at most once at a time."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._run = run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task on the running loop, unless it runs already."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> bool:
        """Cancel the task and wait for it to end; whether it was running."""
        task, self._task = self._task, None
        if task is None:
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True
