"""Handlers: what runs a job, and what a running job can tell its worker.

A :class:`Registry` maps each job type to a handler, a plain function that receives a
:class:`JobContext` and returns a small JSON result (or ``None``)::

    registry = Registry()

    @registry.handler("send_email", max_attempts=5, backoff=Backoff(base=timedelta(seconds=10)))
    def send_email(ctx: JobContext) -> dict[str, str]:
        ctx.progress(10, "rendering")
        ...
        return {"message_id": message_id}

A handler ends its attempt in one of four ways:

- it **returns**: the job is ``completed`` and the value is stored in ``result``;
- it **raises** :class:`Snooze`: the job goes back to ``pending`` until ``after`` has passed.
  This is not a failure: ``attempts`` still counts the run, and ``max_attempts`` grows by one,
  so the number of failures the job may still have is unchanged and ``ctx.attempt`` keeps
  counting runs (bound a handler that retries forever with it);
- it **raises** :class:`Cancel`: the job ends ``cancelled`` with the reason in ``last_error``;
- it **raises anything else** (or outlives its ``timeout``): the attempt failed. The job goes
  back to ``pending`` with ``run_at`` pushed by the handler's :class:`~sqla_jobqueue.Backoff`
  while attempts remain, and ends ``failed`` when they are spent.

**Transactional completion.** ``ctx.session`` is a SQLAlchemy session opened on first use.
What the handler writes through it commits in the same transaction that marks the job
completed, so the handler's database effects happen exactly once even though the job may
run more than once. If the handler raises, or the worker has lost the job (it was rescued
and claimed by another worker), that transaction is rolled back.

**Periodic jobs.** ``schedule=`` declares when the job type runs by itself: a
:class:`~sqla_jobqueue.schedules.Cron` or :class:`~sqla_jobqueue.schedules.Every`, or a
list of them each with a ``name`` of its own. Workers enqueue one job per tick (see
:mod:`sqla_jobqueue.schedules`)::

    @registry.handler("report", schedule=Cron("0 * * * *", timezone="Europe/Paris"))
    def report(ctx: JobContext) -> None: ...

**How max_attempts reaches the row.** Claiming compares a job's ``attempts`` with the
``max_attempts`` stored on its row, so the handler's ``max_attempts`` has to be written
when the job is enqueued. :meth:`Registry.enqueue` and :meth:`Registry.enqueue_many` do
that (any keyword given explicitly wins); a job enqueued by :meth:`JobQueue.enqueue
<sqla_jobqueue.JobQueue.enqueue>` directly keeps the ``max_attempts`` it was given there.
"""

from __future__ import annotations

import inspect
import json
import threading
import uuid
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from typing_extensions import deprecated

from . import validation as check
from .aqueue import AsyncJobQueue
from .backoff import DEFAULT_BACKOFF, Backoff
from .errors import InvalidJobError
from .model import DEFAULT_MAX_ATTEMPTS, JobMixin
from .queue import JobQueue
from .schedules import PeriodicJob, Schedule

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = [
    "AsyncHandlerFunction",
    "AsyncJobContext",
    "Cancel",
    "Handler",
    "HandlerFunction",
    "JobContext",
    "JobContextBase",
    "Registry",
    "Retry",
    "ScheduleArgument",
    "Snooze",
]

HandlerFunction = Callable[["JobContext"], Any]
"""A handler: called with the job's context, returns a result or None.

The result may hold what a job's ``data`` may (JSON, and ``UUID``, ``datetime``, ``date``,
``time`` and ``Decimal`` stored as strings; see :mod:`sqla_jobqueue.validation`).
"""

AsyncHandlerFunction = Callable[["AsyncJobContext"], Awaitable[Any]]
"""An ``async def`` handler: awaited with the job's context by the
:class:`~sqla_jobqueue.worker.AsyncWorker`, returns what a :data:`HandlerFunction` does."""

ScheduleArgument = Schedule | Sequence[Schedule] | None
"""What ``schedule=`` takes: one schedule, several (each with a name of its own), or none."""

F = TypeVar("F", bound=HandlerFunction | AsyncHandlerFunction)
J = TypeVar("J", bound=JobMixin)
S = TypeVar("S")


class Snooze(Exception):
    """Raised by a handler to run the job again later, without counting a failure.

    Parameters
    ----------
    after:
        How long to wait before the job is claimable again (zero or more).
    reason:
        Why; logged, not stored.
    """

    def __init__(self, after: timedelta = timedelta(0), reason: str = "") -> None:
        self.after = check.check_finite_delay(after, "Snooze after")
        self.reason = reason
        super().__init__(reason or f"snoozed for {after}")


@deprecated("Retry is now Snooze: raise Snooze(after, reason)")
class Retry(Snooze):
    """The former name of :class:`Snooze` (deprecated: "retry" now means only an
    operator's :meth:`JobQueue.retry <sqla_jobqueue.JobQueue.retry>` of a finished job)."""


class Cancel(Exception):
    """Raised by a handler to give up on the job: it ends ``cancelled``.

    Parameters
    ----------
    reason:
        Stored in the job's ``last_error``.
    """

    def __init__(self, reason: str = "cancelled by its handler") -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Handler:
    """A registered handler and its settings.

    Attributes
    ----------
    job_type:
        The job type it runs.
    function:
        The callable, given a :class:`JobContext`.
    max_attempts:
        Written on jobs enqueued through :meth:`Registry.enqueue`.
    backoff:
        The delay before the next attempt after a failed one.
    timeout:
        Longest an attempt may run before it is marked failed; ``None`` for no limit.
    schedules:
        When workers enqueue jobs of this type by themselves (periodic jobs), each
        schedule with its name filled in.
    is_async:
        Whether the function is an ``async def`` one (run by the AsyncWorker); worked
        out once, on registration.
    """

    job_type: str
    function: HandlerFunction | AsyncHandlerFunction
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Backoff = DEFAULT_BACKOFF
    timeout: timedelta | None = None
    schedules: tuple[Schedule, ...] = ()
    is_async: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check.check_job_type(self.job_type)
        if not callable(self.function):
            raise InvalidJobError(f"handler of {self.job_type!r} is not callable")
        check.check_max_attempts(self.max_attempts)
        if not isinstance(self.backoff, Backoff):
            raise InvalidJobError(
                f"backoff of {self.job_type!r} must be a Backoff, got {type(self.backoff).__name__}"
            )
        if self.timeout is not None:
            check.check_positive_interval(self.timeout, f"timeout of {self.job_type!r}")
        schedules = _schedules(self.job_type, self.schedules)
        object.__setattr__(self, "schedules", schedules)
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.function))


def _schedules(job_type: str, listed: Iterable[object]) -> tuple[Schedule, ...]:
    """The schedules of a handler, named, checked: each a Schedule, their names distinct."""
    named: list[Schedule] = []
    for schedule in listed:
        if not isinstance(schedule, Schedule):
            raise InvalidJobError(
                f"schedule of {job_type!r} must be a Cron or an Every (or a list of them), "
                f"got {type(schedule).__name__}"
            )
        named.append(schedule.named(job_type))
    _refuse_shared_names(named)
    return tuple(named)


def _refuse_shared_names(schedules: Iterable[Schedule]) -> None:
    seen: set[str | None] = set()
    for schedule in schedules:
        if schedule.name in seen:
            raise InvalidJobError(
                f"two schedules are named {schedule.name!r}: give each schedule of a job type "
                "a name of its own (Cron(..., name='report-daily'))"
            )
        seen.add(schedule.name)


class Registry:
    """Job types and the handlers that run them.

    Parameters
    ----------
    handlers:
        Optional mapping of job type to a handler function, or to a :class:`Handler`.
    """

    def __init__(
        self, handlers: Mapping[str, HandlerFunction | AsyncHandlerFunction | Handler] | None = None
    ) -> None:
        self._handlers: dict[str, Handler] = {}
        if handlers is not None:
            self.update(handlers)

    def handler(
        self,
        job_type: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout: timedelta | None = None,
        retry: Backoff | None = None,
        schedule: ScheduleArgument = None,
    ) -> Callable[[F], F]:
        """Decorator: register the decorated function as the handler of ``job_type``
        (``retry`` is the deprecated name of ``backoff``; ``schedule`` declares periodic
        jobs, see :meth:`register`)."""

        def register(function: F) -> F:
            self.register(job_type, function, max_attempts=max_attempts, backoff=backoff,
                          timeout=timeout, retry=retry, schedule=schedule)  # fmt: skip
            return function

        return register

    def register(
        self,
        job_type: str,
        function: HandlerFunction | AsyncHandlerFunction,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout: timedelta | None = None,
        retry: Backoff | None = None,
        schedule: ScheduleArgument = None,
    ) -> Handler:
        """Register ``function`` as the handler of ``job_type``; return its :class:`Handler`.

        ``retry`` is the deprecated name of ``backoff``. ``schedule`` (a
        :class:`~sqla_jobqueue.schedules.Cron` or :class:`~sqla_jobqueue.schedules.Every`,
        or a list of them) makes workers enqueue a job of this type at each of its ticks;
        a schedule is named after the job type unless it has a ``name``.

        Raises
        ------
        InvalidJobError
            When the settings are not acceptable, the type already has a handler, or a
            schedule's name is taken.
        """
        if retry is not None:
            warnings.warn(
                "the handler setting retry= is now backoff=", DeprecationWarning, stacklevel=3
            )
            backoff = retry
        schedules = (schedule,) if isinstance(schedule, Schedule) else tuple(schedule or ())
        spec = Handler(job_type, function, max_attempts, backoff, timeout, schedules)
        return self._add(spec)

    def update(
        self, handlers: Mapping[str, HandlerFunction | AsyncHandlerFunction | Handler]
    ) -> None:
        """Register every handler of a mapping (job type to function or :class:`Handler`)."""
        for job_type, value in handlers.items():
            if isinstance(value, Handler):
                if value.job_type != job_type:
                    raise InvalidJobError(
                        f"mapping key {job_type!r} names a Handler of {value.job_type!r}"
                    )
                self._add(value)
            else:
                self.register(job_type, value)

    def _add(self, spec: Handler) -> Handler:
        if spec.job_type in self._handlers:
            raise InvalidJobError(f"job type {spec.job_type!r} already has a handler")
        registered = (s for handler in self._handlers.values() for s in handler.schedules)
        _refuse_shared_names([*registered, *spec.schedules])
        self._handlers[spec.job_type] = spec
        return spec

    def __getitem__(self, job_type: str) -> Handler:
        try:
            return self._handlers[job_type]
        except KeyError:
            raise KeyError(f"no handler registered for job type {job_type!r}") from None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    @property
    def job_types(self) -> list[str]:
        """The registered job types, in registration order."""
        return list(self._handlers)

    def periodic_jobs(self, job_types: Iterable[str] | None = None) -> list[PeriodicJob]:
        """The schedules of the handlers (of ``job_types``, by default all), each bound to
        its job type and its handler's ``max_attempts``."""
        types = self._handlers if job_types is None else job_types
        return [
            PeriodicJob(spec.job_type, schedule, spec.max_attempts)
            for t in types
            if (spec := self._handlers.get(t)) is not None
            for schedule in spec.schedules
        ]

    def async_job_types(self, job_types: Iterable[str] | None = None) -> list[str]:
        """The types (of ``job_types``, by default all) whose handler is ``async def``."""
        types = self._handlers if job_types is None else job_types
        return [t for t in types if t in self._handlers and self._handlers[t].is_async]

    @overload
    def enqueue(
        self, queue: AsyncJobQueue[J], job_type: str, data: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Coroutine[Any, Any, J]: ...  # fmt: skip

    @overload
    def enqueue(
        self, queue: JobQueue[J], job_type: str, data: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> J: ...  # fmt: skip

    def enqueue(
        self, queue: JobQueue[Any] | AsyncJobQueue[Any], job_type: str,
        data: Mapping[str, Any] | None = None, **overrides: Any,
    ) -> Any:  # fmt: skip
        """Enqueue a job of a registered type with its handler's ``max_attempts``.

        On an :class:`~sqla_jobqueue.AsyncJobQueue` it returns the awaitable of its
        ``enqueue``: ``job = await registry.enqueue(AsyncJobQueue(session), "send", {...})``.
        ``overrides`` are the keywords of :meth:`JobQueue.enqueue
        <sqla_jobqueue.JobQueue.enqueue>` (``priority``, ``max_attempts``, ``run_at``,
        ``unique_key``); an explicit ``max_attempts`` wins over the handler's.
        """
        spec = self._handlers.get(job_type)
        if spec is None:
            raise InvalidJobError(
                f"no handler registered for job type {job_type!r}; registered: "
                f"{', '.join(self._handlers) or 'none'}"
            )
        overrides.setdefault("max_attempts", spec.max_attempts)
        return queue.enqueue(job_type, data, **overrides)

    @overload
    def enqueue_many(
        self, queue: AsyncJobQueue[Any], jobs: Iterable[Mapping[str, Any]]
    ) -> Coroutine[Any, Any, list[uuid.UUID]]: ...

    @overload
    def enqueue_many(
        self, queue: JobQueue[Any], jobs: Iterable[Mapping[str, Any]]
    ) -> list[uuid.UUID]: ...

    def enqueue_many(
        self, queue: JobQueue[Any] | AsyncJobQueue[Any], jobs: Iterable[Mapping[str, Any]]
    ) -> Any:
        """:meth:`JobQueue.enqueue_many <sqla_jobqueue.JobQueue.enqueue_many>` with each
        job's handler's ``max_attempts`` filled in where the mapping has none (awaitable on
        an :class:`~sqla_jobqueue.AsyncJobQueue`)."""
        filled: list[Mapping[str, Any]] = []
        for index, job in enumerate(jobs):
            job_type = job.get("job_type") if isinstance(job, Mapping) else None
            spec = self._handlers.get(job_type) if isinstance(job_type, str) else None
            if spec is None:
                raise InvalidJobError(f"job #{index}: no handler registered for {job_type!r}")
            if "max_attempts" not in job:
                job = {**job, "max_attempts": spec.max_attempts}
            filled.append(job)
        return queue.enqueue_many(filled)


class JobContextBase(Generic[S]):
    """What a handler knows about its job, how it reports back, and the session factory
    its ``session`` comes from: what :class:`JobContext` (``S`` a ``Session``) and
    :class:`AsyncJobContext` (``S`` an ``AsyncSession``) share.

    Attributes
    ----------
    job_id, job_type, attempt, max_attempts:
        The job as claimed; ``attempt`` counts from 1.
    worker_id:
        The identity of the worker running it.
    """

    def __init__(
        self,
        *,
        job_id: uuid.UUID,
        job_type: str,
        data: dict[str, Any] | str,
        attempt: int,
        max_attempts: int,
        worker_id: str,
        session_factory: Callable[[], S] | None = None,
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self._data = data
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._progress: int | None = None
        self._stage: str | None = None
        self._events = 0
        self._dirty = False
        self._abandoned = False
        self._session_factory = session_factory
        self._session: S | None = None

    @property
    def data(self) -> dict[str, Any]:
        """The job's arguments, decoded from the stored JSON on first use.

        Values enqueued as ``UUID``, ``datetime``, ``date``, ``time`` or ``Decimal`` are
        the strings they were stored as: ``uuid.UUID(ctx.data["order_id"])`` rebuilds one.
        """
        data = self._data
        if isinstance(data, str):
            data = self._data = json.loads(data)
        return data

    # -------------------------------------------------------------- reporting

    def progress(self, percent: int, stage: str | None = None) -> None:
        """Report progress (0..100) and optionally the current stage.

        Cheap to call often: the worker writes the latest values of all its running jobs
        in one short statement a few times a second at most, so other sessions see them
        while the job runs.
        """
        # Handlers call this in tight loops: a plain in-range int skips the full checks.
        if type(percent) is not int or not 0 <= percent <= 100:
            percent = check.check_progress(percent)
        if stage is None:
            # No lock for a percent alone (handlers report in tight loops): the percent is
            # stored before the flag is raised, and take_progress lowers the flag before it
            # reads the percent, so a report made while the worker takes is written next
            # time rather than lost.
            self._progress = percent
            self._dirty = True
            return
        stage = check.check_stage(stage)
        with self._lock:
            self._progress = percent
            self._stage = stage
            self._dirty = True

    def event(self, n: int = 1) -> None:
        """Count ``n`` events (items processed, rows seen...) in ``events_count``."""
        count = check.check_int32(n, "events")
        if count < 0:
            raise InvalidJobError(f"events must be zero or more, got {count}")
        with self._lock:
            self._events += count
            self._dirty = True

    def take_progress(self) -> tuple[int | None, str | None, int] | None:
        """Hand the unwritten progress to the worker (internal); ``None`` when clean."""
        if not self._dirty:
            # Most jobs report nothing. Read without the lock: a report the handler is making
            # meanwhile is taken at the next tick, or with the completion.
            return None
        with self._lock:
            if not self._dirty:
                return None
            self._dirty = False  # before reading: see progress()
            taken = (self._progress, self._stage, self._events)
            self._events = 0
            return taken

    def give_back_events(self, events: int) -> None:
        """Put back events whose write failed, to be written next time (internal)."""
        if events:
            with self._lock:
                self._events += events
                self._dirty = True

    # ------------------------------------------------------------ lifecycle

    @property
    def abandoned(self) -> bool:
        """True once the worker gave up on this attempt (timeout, lost job, shutdown).

        A long handler may check it and return early; what it returns is discarded.
        """
        return self._abandoned

    def abandon(self) -> None:
        """Mark the attempt abandoned (internal)."""
        self._abandoned = True

    @property
    def uses_session(self) -> bool:
        """Whether the handler opened its ``session``."""
        return self._session is not None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(job_id={self.job_id}, job_type={self.job_type!r}, "
            f"attempt={self.attempt}/{self.max_attempts})"
        )


class JobContext(JobContextBase["Session"]):
    """What a handler knows about its job, how it reports back, and the session whose
    transaction completes the job.

    Attributes
    ----------
    job_id, job_type, attempt, max_attempts:
        The job as claimed; ``attempt`` counts from 1.
    worker_id:
        The identity of the worker running it.
    """

    @property
    def session(self) -> Session:
        """A session whose transaction also completes the job (opened on first use).

        Write the job's database effects through it and do not commit: the worker
        commits after marking the job completed in the same transaction.
        """
        if self._session is None:
            if self._session_factory is None:
                raise RuntimeError(
                    "ctx.session is not available here: a plain (def) handler run by the "
                    "AsyncWorker has no sync session; make the handler async def to use "
                    "ctx.session (an AsyncSession), or run it with the sync Worker"
                )
            self._session = self._session_factory()
        return self._session


class AsyncJobContext(JobContextBase["AsyncSession"]):
    """What an ``async def`` handler knows about its job, how it reports back, and the
    ``AsyncSession`` whose transaction completes the job.

    Attributes
    ----------
    job_id, job_type, attempt, max_attempts:
        The job as claimed; ``attempt`` counts from 1.
    worker_id:
        The identity of the worker running it.
    """

    @property
    def session(self) -> AsyncSession:
        """An ``AsyncSession`` whose transaction also completes the job (opened on first
        use). Write the job's database effects through it and do not commit: the worker
        commits after marking the job completed in the same transaction."""
        if self._session is None:
            if self._session_factory is None:
                raise RuntimeError("this AsyncJobContext has no session factory")
            self._session = self._session_factory()
        return self._session
