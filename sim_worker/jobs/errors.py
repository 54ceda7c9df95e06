"""The queue's exceptions (what callers catch), shared by the producer and the consumer."""

from __future__ import annotations


class QueueError(Exception):
    """Base class of the queue's errors."""


class QueueUnavailable(QueueError):
    """Redis cannot be reached (connection refused, timeout, loading): the API answers 503."""


class ObjectNotFound(QueueError, KeyError):
    """A job references an object hash that was never uploaded or has expired: ``put_object`` first."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "object not found"


class BackendUnavailable(QueueError):
    """No live worker serves the job's backend (unknown name, not installed, or no worker running):
    a job for it would wait for ever. The message names the backends that have live workers."""


class JobNotFound(QueueError, KeyError):
    """No such job (never existed, or its TTL expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


__all__ = ["BackendUnavailable", "JobNotFound", "ObjectNotFound", "QueueError", "QueueUnavailable"]
