"""Object I/O on one S3 bucket: the small adapter under :class:`~stockml.storage.store.Store`.

PUT (plain or conditional), GET, LIST (keys or folders), DELETE, and folders of files, each
failure raised as :class:`~stockml.errors.StoreError` (:class:`ObjectGoneError` when the
object does not exist). No layout and no Parquet here: bytes in, bytes out.

Each adapter has its own botocore client (no process-wide endpoint setting, so two adapters on
two endpoints never leak into each other) and one thread pool (:meth:`S3Objects.map`) for the
requests its callers make in parallel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from stockml.errors import StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_WORKERS = 16

_in_pool = threading.local()


def _mark_pool_thread() -> None:
    """Mark the calling thread as one of a pool's: its :meth:`S3Objects.map` calls run serially."""
    _in_pool.flag = True


class ObjectGoneError(StoreError):
    """The object does not exist (e.g. a concurrent merge deleted it since it was listed)."""


class S3Objects:
    """Objects in one bucket.

    Args:
        bucket: the bucket.
        endpoint_url: a custom endpoint (moto_server, LocalStack); None for AWS.
        region: the bucket's region.
        max_workers: threads of :meth:`map` (and connections of the client).
        client: an S3 client to use instead of a new botocore one (e.g. one that records or
            delays requests); it must offer the calls this class makes.
    """

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        max_workers: int = DEFAULT_WORKERS,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.client = client if client is not None else self._new_client()

    def _new_client(self) -> Any:
        import botocore.session
        from botocore.config import Config

        # botocore, not boto3: the same client without boto3's and s3transfer's imports
        # (a Lambda cold start pays for every import)
        session = botocore.session.get_session()
        # LIST answers carry a LastModified per key that nobody here reads; botocore's
        # dateutil parsing of it costs more than the request on a 10,000-key prefix
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(
                max_pool_connections=self.max_workers + 4,
                # AWS_MAX_ATTEMPTS (or a profile's max_attempts) where set, as in every SDK
                retries={
                    "max_attempts": int(session.get_config_variable("max_attempts") or 5),
                    "mode": "standard",
                },
            ),
        )

    def with_client(self, client: Any) -> S3Objects:
        """The same bucket through another client (a new thread pool)."""
        return S3Objects(self.bucket, self.endpoint_url, self.region, self.max_workers, client)

    def __repr__(self) -> str:
        return f"S3Objects(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write one object (atomic: readers see the old or the new object, never a part)."""
        self._call(
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data), f"put {key}"
        )

    def put_bytes_if(self, key: str, data: bytes, etag: str | None = None) -> str | None:
        """Write ``key`` only if it does not exist (``etag`` None) or still has ETag ``etag``.

        A conditional PUT (``If-None-Match: *`` or ``If-Match``; AWS S3 and moto_server): of
        several writers racing for one key, exactly one succeeds.

        Returns:
            The new object's ETag, or None when the condition failed (another writer won).
        """
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            answer = self._call(
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **condition),
                f"put {key} (conditional)",
            )
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",  # the condition is false
                "ConditionalRequestConflict",  # another conditional write of the key in flight
                "NoSuchKey",  # If-Match on a key deleted meanwhile
            ):
                return None
            raise
        return str(answer["ETag"])

    def get_bytes(self, key: str) -> bytes:
        """Read one object.

        Raises:
            ObjectGoneError: the object does not exist.
            StoreError: the read failed.
        """
        return self.get_object(key)[0]

    def get_object(self, key: str) -> tuple[bytes, str]:
        """Read one object and its ETag (what :meth:`put_bytes_if` compares).

        Raises:
            ObjectGoneError: the object does not exist.
            StoreError: the read failed.
        """
        body = self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=key), f"get {key}")
        return bytes(body["Body"].read()), str(body["ETag"])

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (all pages), sorted."""
        keys: list[str] = []

        def run() -> None:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))

        self._call(run, f"list {prefix}")
        return sorted(keys)

    def list_folders(self, prefix: str) -> list[str]:
        """The "folders" right under ``prefix`` (common prefixes ending in ``/``), sorted."""
        folders: list[str] = []

        def run() -> None:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))

        self._call(run, f"list folders {prefix}")
        return sorted(folders)

    def put_folder(self, local_dir: str | Path, prefix: str) -> list[str]:
        """Upload every file under ``local_dir`` to ``prefix/<relative path>``; returns the keys."""
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        keys = [f"{prefix.rstrip('/')}/{p.relative_to(root).as_posix()}" for p in files]
        self.map(
            lambda pair: self.put_bytes(pair[0], pair[1].read_bytes()),
            list(zip(keys, files, strict=True)),
        )
        return keys

    def get_folder(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix/`` as ``{path relative to prefix: bytes}``."""
        base = prefix.rstrip("/") + "/"
        keys = self.list_keys(base)
        blobs = self.map(self.get_bytes, keys)
        return {key[len(base) :]: blob for key, blob in zip(keys, blobs, strict=True)}

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete objects (1000 per request); a key that cannot be deleted is logged, not raised."""
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            answer = self._call(
                partial(
                    self.client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": batch, "Quiet": True},
                ),
                f"delete {len(batch)} superseded file(s)",
            )
            if answer.get("Errors"):
                # harmless for readers (they read the newest file only); the next upsert retries
                logger.warning(
                    "could not delete %d superseded file(s): %s",
                    len(answer["Errors"]),
                    answer["Errors"][:3],
                )

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``, run on the adapter's threads (results in order)."""
        # a call from inside a pool thread runs serially: waiting on the same pool could
        # deadlock it
        if len(items) <= 1 or getattr(_in_pool, "flag", False):
            return [fn(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                # one pool for the adapter's life: starting threads per call costs more than
                # a small PUT when the CPU is busy
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_workers, initializer=_mark_pool_thread
                )
        return list(self._pool.map(fn, items))

    def _call(self, fn: Callable[[], T], what: str) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            error = StoreError
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                error = ObjectGoneError
            raise error(f"s3://{self.bucket}: {what} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"s3://{self.bucket}: {what} failed: {exc}") from exc
