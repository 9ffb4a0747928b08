"""Object I/O (stockml.storage.objects) on moto's in-process S3: objects, folders, conditional
PUTs, and which failures mean "gone"."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from stockml.errors import StoreError
from stockml.settings import StoreSettings
from stockml.storage.objects import ObjectGoneError, S3Objects


@pytest.fixture
def objects(mock_store_settings: StoreSettings) -> S3Objects:
    return S3Objects(mock_store_settings.bucket, max_workers=4)


def test_objects_and_folders(objects: S3Objects, tmp_path: Path) -> None:
    # GIVEN a local folder with nested files
    (tmp_path / "sub").mkdir()
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "sub" / "model.onnx").write_bytes(b"\x00\x01")

    # WHEN it is uploaded and read back
    keys = objects.put_folder(tmp_path, "models/v1")
    objects.put_bytes("models/other.txt", b"x")

    # THEN the names are relative to the prefix and the bytes are equal
    assert keys == ["models/v1/manifest.json", "models/v1/sub/model.onnx"]
    assert objects.get_folder("models/v1") == {
        "manifest.json": b"{}",
        "sub/model.onnx": b"\x00\x01",
    }
    assert objects.get_bytes("models/other.txt") == b"x"
    assert objects.list_folders("models/") == ["models/v1/"]
    # AND deleted objects are gone
    objects.delete_keys(["models/other.txt", "models/v1/manifest.json"])
    assert objects.list_keys("models/") == ["models/v1/sub/model.onnx"]


def test_a_missing_object_is_gone_but_a_missing_bucket_is_an_error(
    objects: S3Objects,
) -> None:
    # a missing key: the store lists again (a concurrent merge deleted it)
    with pytest.raises(ObjectGoneError):
        objects.get_bytes("models/missing")
    # a missing bucket is no such race: a plain StoreError, never retried as "gone"
    elsewhere = S3Objects(objects.bucket + "-none")
    with pytest.raises(StoreError) as failure:
        elsewhere.get_bytes("k")
    assert not isinstance(failure.value, ObjectGoneError)
    with pytest.raises(StoreError, match="NoSuchBucket"):
        elsewhere.list_keys("")


def test_a_conditional_put_succeeds_for_exactly_one_writer(objects: S3Objects) -> None:
    # GIVEN 8 writers racing to create the same key
    wins: list[str] = []
    go = threading.Barrier(8)

    def claim(i: int) -> None:
        go.wait()
        if objects.put_bytes_if("marker", str(i).encode()) is not None:
            wins.append(str(i))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # THEN exactly one created it, and its bytes are stored
    assert len(wins) == 1
    data, etag = objects.get_object("marker")
    assert data.decode() == wins[0]
    # AND an update holding a stale ETag is refused, the current one accepted
    assert objects.put_bytes_if("marker", b"next", etag='"stale"') is None
    assert objects.put_bytes_if("marker", b"next", etag=etag) is not None
    assert objects.get_bytes("marker") == b"next"


def test_map_keeps_order_and_a_call_from_a_pool_thread_does_not_deadlock(
    objects: S3Objects,
) -> None:
    # more outer items than threads, each mapping again from inside the pool
    out = objects.map(lambda i: objects.map(lambda j: i * j, [1, 2, 3]), list(range(12)))
    assert out == [[i, 2 * i, 3 * i] for i in range(12)]
