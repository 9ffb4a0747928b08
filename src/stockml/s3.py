"""Read-only S3 access for the serving Lambda: GET and LIST signed with AWS Signature V4.

The prediction API reads its bundle and feature windows during the Lambda init phase, where
every import counts: botocore's import and client (its service model, endpoint rules) cost
~0.3 s, more than the reads themselves. :class:`S3Reader` needs only the standard library.
It does what serving needs and nothing else (writes go through :class:`stockml.storage.Store`):

- ``get_bytes(key)``, ``list_keys(prefix)`` (all pages), ``get_folder(prefix)``; and, in
  :class:`S3Writer`, ``put_bytes(key, data)``: the prediction log's one write
  (:mod:`stockml.predlog`);
- credentials from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_SESSION_TOKEN``: what Lambda sets for the function's role); elsewhere (a profile, an
  instance role) botocore's credential chain, imported only then;
- AWS endpoints virtual-hosted (``<bucket>.s3.<region>.amazonaws.com``); a custom endpoint
  (moto_server, LocalStack) path-style, as the Store's botocore client addresses it;
- keep-alive connections (one per thread), retries with backoff on connection errors, 5xx,
  throttling; a missing object or bucket raises :class:`~stockml.errors.StoreError`.

The signature is tested against botocore's ``S3SigV4Auth`` on the same requests.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

from stockml.errors import StoreError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_RETRY_STATUS = {500, 502, 503, 504}
_ATTEMPTS = 4


def encode_symbol(symbol: str) -> str:
    """The symbol as a partition value: Hive-style %XX escaping of everything unsafe."""
    return quote(symbol, safe="-_.")


def decode_symbol(value: str) -> str:
    """Inverse of :func:`encode_symbol`."""
    return unquote(value)


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def env_credentials() -> Credentials | None:
    """The credentials Lambda puts in the environment (None when they are not there)."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    return Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN") or None)


class _ChainCredentials:
    """botocore's credential chain (profiles, SSO, instance roles): outside Lambda only.

    Resolved once; botocore refreshes temporary credentials when they near expiry.
    """

    def __init__(self) -> None:
        self._found: Any = None  # botocore.credentials.Credentials
        self._lock = threading.Lock()

    def __call__(self) -> Credentials:
        with self._lock:
            if self._found is None:
                import botocore.session

                self._found = botocore.session.get_session().get_credentials()
        if self._found is None:
            raise StoreError("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        frozen = self._found.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def _uri_encode(value: str, safe: str = "") -> str:
    # RFC 3986 unreserved characters stay, everything else is %XX (upper case), as SigV4 asks
    return quote(value, safe="-_.~" + safe)


def sign(
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    credentials: Credentials,
    region: str,
    now: datetime,
    payload_sha256: str = EMPTY_SHA256,
) -> dict[str, str]:
    """The headers that authenticate one S3 request (Signature Version 4).

    Args:
        method: HTTP method.
        host: the Host header (with ``:port`` when not the scheme's default).
        path: the request path, NOT encoded (``/bucket/key`` or ``/key``).
        query: query parameters, not encoded.
        credentials: who signs.
        region: the bucket's region.
        now: the request time (UTC).
        payload_sha256: hex sha256 of the body (empty body by default).

    Returns:
        ``Host``, ``X-Amz-Date``, ``X-Amz-Content-SHA256``, ``Authorization`` and, with a
        session token, ``X-Amz-Security-Token``.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {
        "host": host,
        "x-amz-content-sha256": payload_sha256,
        "x-amz-date": amz_date,
    }
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            _uri_encode(path, safe="/"),
            "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(query.items())),
            "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers)),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {
        "Host": host,
        "X-Amz-Date": amz_date,
        "X-Amz-Content-SHA256": payload_sha256,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    return out


class S3Reader:
    """GET and LIST on one bucket, with nothing beyond the standard library.

    Args:
        bucket: the bucket.
        endpoint_url: a custom endpoint (``http://127.0.0.1:5000``); None for AWS.
        region: the bucket's region.
        timeout_s: connect and read timeout of one request.
        credentials: who signs (default: the environment, else botocore's chain).
        page_size: keys per LIST page (S3 answers at most 1000).
        max_workers: parallel GETs of :meth:`get_folder`.
    """

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        timeout_s: float = 10.0,
        credentials: Credentials | None = None,
        page_size: int = 1000,
        max_workers: int = 8,
    ) -> None:
        self.bucket = bucket
        self.page_size = page_size
        self.max_workers = max_workers
        self.region = region
        self.timeout_s = timeout_s
        self._credentials = credentials
        if endpoint_url:
            url = urlsplit(endpoint_url)
            self._https = url.scheme == "https"
            self._host = url.netloc
            self._base = f"{url.path.rstrip('/')}/{bucket}"  # path-style
        elif "." in bucket:  # dotted names break the virtual host's TLS certificate
            self._https, self._host, self._base = True, f"s3.{region}.amazonaws.com", f"/{bucket}"
        else:
            self._https, self._host, self._base = True, f"{bucket}.s3.{region}.amazonaws.com", ""
        self._local = threading.local()
        self._chain = _ChainCredentials()

    def __repr__(self) -> str:
        return f"S3Reader(bucket={self.bucket!r}, host={self._host!r})"

    def get_bytes(self, key: str) -> bytes:
        """Read one object.

        Raises:
            StoreError: the object does not exist or the read failed.
        """
        return self._request("GET", f"{self._base}/{key}", {}, f"get {key}")

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (all pages), sorted."""
        keys: list[str] = []
        query = {"list-type": "2", "prefix": prefix, "max-keys": str(self.page_size)}
        while True:
            body = self._request("GET", f"{self._base}/", query, f"list {prefix}")
            try:
                root = ElementTree.fromstring(body)  # the store's own endpoint  # nosec B314
            except ElementTree.ParseError as exc:
                raise StoreError(f"s3://{self.bucket}: list {prefix}: bad answer: {exc}") from exc
            keys.extend(node.text or "" for node in root.iter(f"{_S3_NS}Key"))
            token = root.findtext(f"{_S3_NS}NextContinuationToken")
            if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
                return sorted(keys)
            query = {**query, "continuation-token": token}

    def get_folder(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix/`` as ``{path relative to prefix: bytes}``.

        The GETs run in parallel (one connection per thread): a bundle's files cost about one
        round trip instead of one each, which is most of a Lambda cold start's S3 time.
        """
        base = prefix.rstrip("/") + "/"
        keys = self.list_keys(base)
        if len(keys) <= 1:
            return {key[len(base) :]: self.get_bytes(key) for key in keys}
        with ThreadPoolExecutor(max_workers=min(len(keys), self.max_workers)) as pool:
            blobs = list(pool.map(self.get_bytes, keys))
        return {key[len(base) :]: blob for key, blob in zip(keys, blobs, strict=True)}

    # ------------------------------------------------------------------ HTTP

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                import ssl

                conn = http.client.HTTPSConnection(
                    self._host, timeout=self.timeout_s, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(self._host, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _request(
        self, method: str, path: str, query: Mapping[str, str], what: str, body: bytes = b""
    ) -> bytes:
        target = _uri_encode(path, safe="/")
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        if query:
            target += "?" + "&".join(
                f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(query.items())
            )
        error = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                time.sleep(0.1 * 2**attempt)
            credentials = self._credentials or env_credentials() or self._chain()
            headers = sign(
                method, self._host, path, query, credentials, self.region, _utcnow(), digest
            )
            try:
                conn = self._connection()
                conn.request(method, target, body=body or None, headers=headers)
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status == 200:
                return answer
            code = _error_code(answer)
            error = f"HTTP {response.status} {code}".strip()
            if response.status in _RETRY_STATUS or code in ("SlowDown", "RequestTimeout"):
                continue
            break
        raise StoreError(f"s3://{self.bucket}: {what} failed: {error}")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _error_code(body: bytes) -> str:
    try:
        return ElementTree.fromstring(body).findtext("Code") or ""  # the store's answer  # nosec B314
    except ElementTree.ParseError:
        return ""


class S3Writer(S3Reader):
    """:class:`S3Reader` plus ``put_bytes``: the prediction log's writes from the serving path.

    A PUT of a key is idempotent (the same bytes again), so it is retried like a GET.
    """

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write one object.

        Raises:
            StoreError: the write failed after the retries.
        """
        self._request("PUT", f"{self._base}/{key}", {}, f"put {key}", body=data)
