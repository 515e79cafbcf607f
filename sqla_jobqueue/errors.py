"""The exception hierarchy of sqla_jobqueue.

Every error the library raises on purpose derives from :class:`JobQueueError`, so an
application can catch the whole family in one place. Errors about bad input are raised
before anything is written; errors about state carry the job id and what was found, so
the message alone tells an operator what happened and what to do.
"""

from __future__ import annotations

from uuid import UUID

__all__ = [
    "ConfigurationError",
    "InvalidJobError",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobQueueError",
    "LeaseLostError",
    "ModelError",
    "WaitTimeoutError",
]


class JobQueueError(Exception):
    """Base class of every error raised by sqla_jobqueue."""


class InvalidJobError(JobQueueError, ValueError):
    """An argument is not acceptable: nothing was written.

    Raised for an empty or over-long job type, a payload that is not JSON, too large or
    holds a NUL character, a priority outside the int32 range, a batch size below one,
    progress outside 0..100, and the like.
    """


class ConfigurationError(JobQueueError, ValueError):
    """A setting names something unusable: a database URL that is not PostgreSQL, or an
    application object that holds no engine or URL."""


class ModelError(JobQueueError, TypeError):
    """A class given as the job model is not a mapped :class:`~sqla_jobqueue.JobMixin`."""


class JobNotFoundError(JobQueueError, LookupError):
    """No job has the given id (it never existed, or was pruned)."""

    def __init__(self, job_id: UUID) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id}: it never existed or has been pruned")


class WaitTimeoutError(JobQueueError, TimeoutError):
    """The job did not finish within the time :meth:`JobQueue.wait
    <sqla_jobqueue.JobQueue.wait>` was given; it goes on as it was."""

    def __init__(self, job_id: UUID, timeout: float, status: str) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.status = status
        """Where the job stood when the time ran out."""
        super().__init__(f"job {job_id} did not finish within {timeout:g}s; it is {status}")


class InvalidTransitionError(JobQueueError):
    """The job exists but is not in a state that allows the requested change."""

    def __init__(self, job_id: UUID, action: str, status: str, allowed: tuple[str, ...]) -> None:
        self.job_id = job_id
        self.action = action
        self.status = status
        self.allowed = allowed
        super().__init__(
            f"cannot {action} job {job_id}: it is {status!r}, and {action} needs "
            f"{' or '.join(repr(s) for s in allowed)}"
        )


class LeaseLostError(InvalidTransitionError):
    """A worker wrote to a job it no longer holds.

    The job was rescued after its heartbeat went stale (and possibly claimed again by
    another worker), so this worker's result is discarded. Nothing was written.
    """

    def __init__(
        self,
        job_id: UUID,
        action: str,
        status: str,
        held_by: str | None,
        attempt: int,
        expected_worker: str | None,
        expected_attempt: int | None,
    ) -> None:
        self.held_by = held_by
        self.attempt = attempt
        JobQueueError.__init__(
            self,
            f"cannot {action} job {job_id}: this worker ({expected_worker}, attempt "
            f"{expected_attempt}) no longer holds it; it is {status!r}, held by {held_by!r} "
            f"at attempt {attempt}. Its heartbeat probably went stale and the job was rescued.",
        )
        self.job_id = job_id
        self.action = action
        self.status = status
        self.allowed = ("claimed", "running")
