"""Running a handler: a plain function on a thread, an ``async def`` one on the event loop.

Both end in an :class:`~sqla_jobqueue.worker.outcomes.Outcome`. A handler that used its
context's session has its job completed in that session's transaction
(:meth:`Recorder.complete_in_session
<sqla_jobqueue.worker.recording.Recorder.complete_in_session>`), the async one through
``AsyncSession.run_sync``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from ..handlers import AsyncHandlerFunction, AsyncJobContext, HandlerFunction, JobContext
from .outcomes import Outcome, Run, checked_result, completion, outcome_of_error
from .recording import Recorder

__all__ = ["run_async_handler", "run_handler"]


def run_handler(run: Run, recorder: Recorder, lock: threading.Lock) -> Outcome:
    """Call a plain handler and say how its attempt ended."""
    ctx = run.ctx
    assert isinstance(ctx, JobContext)
    try:
        try:
            value = cast(HandlerFunction, run.spec.function)(ctx)
        except BaseException as exc:
            return outcome_of_error(run, exc)
        result = checked_result(run, value, recorder.settings.max_payload_bytes)
        if isinstance(result, Outcome):
            return result
        if not ctx.uses_session:
            return completion(run, result)
        return recorder.complete_in_session(ctx.session, run, value, lock)
    finally:
        if ctx.uses_session:
            ctx.session.close()


async def run_async_handler(run: Run, recorder: Recorder, lock: threading.Lock) -> Outcome:
    """Await an ``async def`` handler and say how its attempt ended.

    Cancelled (its timeout, or the end of the grace period) the task ends with
    :class:`asyncio.CancelledError`: the worker has written the attempt's outcome already.
    """
    ctx = run.ctx
    assert isinstance(ctx, AsyncJobContext)
    try:
        try:
            value: Any = await cast(AsyncHandlerFunction, run.spec.function)(ctx)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return outcome_of_error(run, exc)
        result = checked_result(run, value, recorder.settings.max_payload_bytes)
        if isinstance(result, Outcome):
            return result
        if not ctx.uses_session:
            return completion(run, result)
        return await ctx.session.run_sync(recorder.complete_in_session, run, value, lock)
    finally:
        if ctx.uses_session:
            await asyncio.shield(ctx.session.close())
