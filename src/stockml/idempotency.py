"""Do a unit of work once per message id, even when the message is delivered again.

SQS delivers at least once: a message can come back while its first delivery still runs (a
visibility timeout, a retried poll) or after it finished. :func:`run_once` claims a marker
object per message id with a conditional PUT (``If-None-Match: *``): of two deliveries
racing, exactly one gets it. Powertools' idempotency utility keeps the same record in a
DynamoDB table; S3 conditional writes (AWS since 2024, moto_server) give the same atomic claim
in the bucket the function already writes, so no other service is needed.

The marker (JSON) goes through three states, each change a PUT conditional on the ETag the
writer last saw (``If-Match``), so a delivery that lost its claim can never overwrite it:

- ``running`` with ``expires_at``: the lease of the delivery doing the work. Another delivery
  meanwhile raises :class:`AlreadyRunningError` (report the message as failed: SQS retries it
  later). A lease ends when the delivery's Lambda would have been stopped, so an expired
  ``running`` marker is a dead delivery's and is taken over;
- ``done`` with the work's result: later deliveries return it without doing the work;
- ``failed``: the work raised; the next delivery takes over at once.

The store itself stays correct when the same work does run twice (see
:mod:`stockml.storage`); the marker saves the second run's provider calls and writes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stockml.errors import StockmlError
from stockml.storage import ObjectGoneError, Store

logger = logging.getLogger(__name__)

# the longest a Lambda invocation can run: the lease when the caller does not know better
DEFAULT_LEASE_S = 900.0
_MESSAGES_DIR = "_messages"


class AlreadyRunningError(StockmlError):
    """Another delivery of the same message holds an unexpired lease: retry it later."""


@dataclass(frozen=True)
class Once:
    """The outcome of :func:`run_once`: ``ran`` False when an earlier delivery did the work."""

    ran: bool
    result: Any


def marker_key(store: Store, message_id: str) -> str:
    """Where the marker of ``message_id`` lives (beside the raw table it guards)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in message_id)
    return f"{store.raw_prefix}/{_MESSAGES_DIR}/{safe}.json"


def run_once(
    store: Store,
    message_id: str,
    work: Callable[[], Any],
    lease_s: float = DEFAULT_LEASE_S,
    clock: Callable[[], float] = time.time,
) -> Once:
    """Run ``work()`` unless another delivery of ``message_id`` did or does.

    Args:
        store: the bucket holding the markers.
        message_id: the SQS message id (the same on every delivery of the message).
        work: the processing; its result must be JSON-serialisable (it is kept in the marker).
        lease_s: how long this delivery may run (in Lambda: the invocation's remaining time).
        clock: seconds since the epoch (tests pass their own).

    Returns:
        ``Once(ran=True, result)`` after running the work; ``Once(ran=False, result)`` with the
        earlier delivery's result when it had finished.

    Raises:
        AlreadyRunningError: another delivery is running it now.
        StoreError: S3 failed.
        Anything ``work`` raises (the marker is then left ``failed``).
    """
    key = marker_key(store, message_id)
    owner = uuid.uuid4().hex

    def marker(status: str, **extra: Any) -> bytes:
        body = {"status": status, "message_id": message_id, "owner": owner, "at": clock()}
        return json.dumps({**body, **extra}, default=str).encode()

    etag = _claim(store, key, marker("running", expires_at=clock() + lease_s), clock)
    if isinstance(etag, Once):
        return etag
    try:
        result = work()
    except BaseException as exc:
        failed = marker("failed", error=f"{type(exc).__name__}: {exc}"[:1000])
        if store.put_bytes_if(key, failed, etag=etag) is None:
            logger.warning("%s: the marker changed while this delivery ran", message_id)
        raise
    if store.put_bytes_if(key, marker("done", result=result), etag=etag) is None:
        # this delivery outlived its lease and another one took over: both did the work,
        # which the store absorbs; the other one records its own outcome
        logger.warning("%s: done, but another delivery took the marker over", message_id)
    return Once(ran=True, result=result)


def _claim(store: Store, key: str, running: bytes, clock: Callable[[], float]) -> str | Once:
    """Create the marker, or take over a dead or failed delivery's; the marker's new ETag.

    Returns the earlier outcome instead when that delivery is done.
    """
    for _ in range(3):  # the marker may change between our GET and our conditional PUT
        etag = store.put_bytes_if(key, running)
        if etag is not None:
            return etag
        try:
            data, current = store.get_object(key)
        except ObjectGoneError:  # deleted (expired) meanwhile: claim it afresh
            continue
        found = json.loads(data)
        if found.get("status") == "done":
            logger.info("%s: already processed; not doing it again", found.get("message_id"))
            return Once(ran=False, result=found.get("result"))
        if found.get("status") == "running" and float(found.get("expires_at", 0)) > clock():
            raise AlreadyRunningError(
                f"message {found.get('message_id')} is being processed by another delivery "
                f"(lease until {time.strftime('%H:%M:%S', time.gmtime(found['expires_at']))} UTC)"
            )
        # a failed delivery, or one whose lease ended (its Lambda was stopped): take over
        etag = store.put_bytes_if(key, running, etag=current)
        if etag is not None:
            return etag
    raise AlreadyRunningError(f"{key}: other deliveries keep changing the marker")
