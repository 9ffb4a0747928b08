"""The serving Lambda's read-only S3 client: SigV4 as botocore signs it, reads from a real moto_server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from stockml.errors import StoreError
from stockml.s3 import Credentials, S3Reader, _uri_encode, sign
from stockml.settings import StoreSettings
from stockml.storage import Store

CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
TOKEN = Credentials(CREDS.access_key, CREDS.secret_key, "FwoGZX+session/token==")


@pytest.mark.parametrize(
    ("scheme", "host", "path", "query", "creds"),
    [
        # path-style on a custom endpoint, a Hive-escaped symbol in the key
        ("http", "127.0.0.1:5000", "/bkt/features/_latest/symbol=%5EGSPC/20171110.npz", {}, CREDS),
        # virtual-hosted on AWS, with a session token (Lambda), a space and non-ASCII
        ("https", "bkt.s3.eu-west-1.amazonaws.com", "/models/v 1/ü.json", {}, TOKEN),
        # LIST v2 with a continuation token full of reserved characters
        (
            "http",
            "127.0.0.1:5000",
            "/bkt/",
            {
                "list-type": "2",
                "prefix": "features/_latest/symbol=^GSPC/",
                "continuation-token": "a+b/c==",
            },
            TOKEN,
        ),
    ],
)
def test_signature_is_botocores(
    scheme: str, host: str, path: str, query: dict[str, str], creds: Credentials
) -> None:
    # GIVEN the request as botocore's S3 client would send it, signed by botocore
    target = _uri_encode(path, safe="/")
    if query:
        target += "?" + "&".join(
            f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(query.items())
        )
    request = AWSRequest(method="GET", url=f"{scheme}://{host}{target}", headers={})
    request.context = {"payload_signing_enabled": True}
    S3SigV4Auth(BotocoreCredentials(*creds), "s3", "eu-west-1").add_auth(request)
    now = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    # WHEN our signer signs the same request at the same second
    ours = sign("GET", host, path, query, creds, "eu-west-1", now)
    # THEN every signed header is botocore's, byte for byte
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
        assert ours[name] == request.headers[name]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


@pytest.mark.integration
def test_reader_gets_and_lists_what_the_store_wrote(store_settings: StoreSettings) -> None:
    # GIVEN objects written by the botocore Store, keys with escapes, spaces and non-ASCII
    store = Store.from_settings(store_settings)
    keys = [
        "features/_latest/symbol=%5EGSPC/20171110.npz",
        "models/v 1/ü.json",
        *[f"many/{i:04d}.bin" for i in range(7)],
    ]
    for i, key in enumerate(keys):
        store.put_bytes(key, bytes([i]) * (i + 1))
    # WHEN the reader reads them, listing 3 keys a page
    reader = S3Reader(store_settings.bucket, store_settings.endpoint_url, page_size=3)
    # THEN it gets the same bytes and lists every page
    for i, key in enumerate(keys):
        assert reader.get_bytes(key) == bytes([i]) * (i + 1)
    assert reader.list_keys("many/") == store.list_keys("many/") == sorted(keys[2:])
    assert reader.list_keys("") == sorted(keys)
    assert reader.get_folder("models/v 1") == {"ü.json": b"\x01\x01"}
    assert reader.list_keys("nothing/") == []


@pytest.mark.integration
def test_reader_errors_are_store_errors(store_settings: StoreSettings) -> None:
    reader = S3Reader(store_settings.bucket, store_settings.endpoint_url)
    with pytest.raises(StoreError, match="get missing.json failed: HTTP 404 NoSuchKey"):
        reader.get_bytes("missing.json")
    with pytest.raises(StoreError, match="NoSuchBucket"):
        S3Reader("no-such-bucket", store_settings.endpoint_url).list_keys("")
    # a dead endpoint: retried, then one clear error (no traceback of http.client)
    with pytest.raises(StoreError, match="ConnectionRefusedError"):
        S3Reader("b", "http://127.0.0.1:9", timeout_s=1).get_bytes("k")


def test_reader_imports_nothing_beyond_the_standard_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        before = set(sys.modules)
        from stockml.s3 import S3Reader
        S3Reader("bucket", region="eu-west-1")
        print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] in
              ("botocore", "boto3", "urllib3", "requests", "pandas", "numpy")))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.integration
def test_without_env_credentials_the_profile_signs(
    store_settings: StoreSettings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN no credentials in the environment, a profile in a credentials file, no IMDS
    Store.from_settings(store_settings).put_bytes("k.json", b"{}")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    profile = tmp_path / "credentials"
    profile.write_text("[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reader = S3Reader(store_settings.bucket, store_settings.endpoint_url)
    # THEN the reader signs with the profile (botocore's chain) and reads
    assert reader._chain().access_key == "AKIAPROFILE"
    assert reader.get_bytes("k.json") == b"{}"
    # AND with no credentials anywhere, the error says so
    profile.write_text("")
    with pytest.raises(StoreError, match="no AWS credentials"):
        S3Reader(store_settings.bucket, store_settings.endpoint_url).get_bytes("k.json")


def test_get_folder_reads_the_objects_in_parallel_and_fails_whole() -> None:
    # GIVEN an S3 endpoint whose GETs each take 0.2 s, counting how many run at once, with 6
    # objects under bundle/ and one under broken/ whose GET fails
    objects = {f"bundle/{name}": name.encode() * 3 for name in "abcdef"}
    objects["broken/x"] = b""
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            key = unquote(url.path).removeprefix("/bkt/")
            if not key:  # LIST v2
                prefix = parse_qs(url.query)["prefix"][0]
                keys = "".join(f"<Key>{k}</Key>" for k in objects if k.startswith(prefix))
                ns = "http://s3.amazonaws.com/doc/2006-03-01/"
                self._send(
                    200, f'<ListBucketResult xmlns="{ns}">{keys}</ListBucketResult>'.encode()
                )
                return
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.2)
            with lock:
                state["now"] -= 1
            if key == "broken/x":
                self._send(403, b"<Error><Code>AccessDenied</Code></Error>")
            else:
                self._send(200, objects[key])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reader = S3Reader("bkt", f"http://127.0.0.1:{server.server_port}", credentials=CREDS)
        # WHEN the reader reads the folder
        folder = reader.get_folder("bundle")
        # THEN it holds every object, and the GETs overlapped (one round trip, not six)
        assert folder == {name: name.encode() * 3 for name in "abcdef"}
        assert state["most"] >= 3
        # AND a folder with an unreadable object is an error, not a partial folder
        with pytest.raises(StoreError, match="get broken/x failed: HTTP 403 AccessDenied"):
            reader.get_folder("broken")
    finally:
        server.shutdown()
        server.server_close()
