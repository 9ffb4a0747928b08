"""Once per SQS message id: conditional-PUT markers on moto's in-process S3."""

from __future__ import annotations

import json
import threading

import pytest

from stockml.idempotency import AlreadyRunningError, marker_key, run_once
from stockml.settings import StoreSettings
from stockml.storage import Store


@pytest.fixture
def store(mock_store_settings: StoreSettings) -> Store:
    return Store.from_settings(mock_store_settings)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_message_delivered_again_after_it_was_processed_is_not_processed_again(
    store: Store,
) -> None:
    # GIVEN a message processed once
    calls: list[int] = []

    def work() -> dict[str, int]:
        calls.append(1)
        return {"written": 5}

    first = run_once(store, "msg-1", work)

    # WHEN it is delivered again
    again = run_once(store, "msg-1", work)

    # THEN the work ran once, and the redelivery returns the first delivery's result
    assert (first.ran, again.ran) == (True, False)
    assert again.result == {"written": 5} and len(calls) == 1
    marker = json.loads(store.get_bytes(marker_key(store, "msg-1")))
    assert marker["status"] == "done"
    # AND another message id is another piece of work
    assert run_once(store, "msg-2", work).ran and len(calls) == 2


def test_a_redelivery_while_the_first_one_runs_is_refused(store: Store) -> None:
    # GIVEN a first delivery still working
    started, release = threading.Event(), threading.Event()
    results: list[object] = []

    def slow() -> str:
        started.set()
        release.wait(30)
        return "done once"

    first = threading.Thread(target=lambda: results.append(run_once(store, "m", slow)))
    first.start()
    assert started.wait(30)

    # WHEN the message is delivered again meanwhile
    with pytest.raises(AlreadyRunningError, match="another delivery"):
        run_once(store, "m", lambda: pytest.fail("the work ran twice"))

    # THEN once the first one finishes, a later delivery gets its result without running
    release.set()
    first.join(30)
    assert results[0].ran  # type: ignore[attr-defined]
    assert run_once(store, "m", lambda: pytest.fail("ran again")).result == "done once"


def test_a_dead_delivery_is_taken_over_after_its_lease(store: Store) -> None:
    # GIVEN a delivery that claimed the message with a 60 s lease and then died (no marker
    # update: we stop it from inside its work)
    clock = Clock()

    class Died(BaseException):
        pass

    def dies() -> None:
        raise Died

    key = marker_key(store, "m")
    running = json.dumps({"status": "running", "message_id": "m", "expires_at": clock() + 60})
    assert store.put_bytes_if(key, running.encode()) is not None

    # WHEN it is delivered again within the lease, and after it
    with pytest.raises(AlreadyRunningError):
        run_once(store, "m", lambda: "x", clock=clock)
    clock.now += 61
    taken = run_once(store, "m", lambda: "taken over", clock=clock)

    # THEN the later delivery took over and did the work
    assert taken.ran and taken.result == "taken over"
    # AND a delivery whose work raises leaves the marker failed: the next one runs it at once
    with pytest.raises(Died):
        run_once(store, "n", dies, clock=clock)
    assert json.loads(store.get_bytes(marker_key(store, "n")))["status"] == "failed"
    assert run_once(store, "n", lambda: "second try", clock=clock).ran


def test_deliveries_racing_for_the_claim_run_the_work_exactly_once(store: Store) -> None:
    # GIVEN 8 deliveries of one message starting together
    barrier = threading.Barrier(8)
    calls: list[int] = []
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver() -> None:
        barrier.wait()
        try:
            once = run_once(store, "race", lambda: calls.append(1) or "ok")
            with lock:
                outcomes.append("ran" if once.ran else "done before")
        except AlreadyRunningError:
            with lock:
                outcomes.append("refused")

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # THEN exactly one ran it; the others were refused or saw it done
    assert len(calls) == 1 and outcomes.count("ran") == 1 and len(outcomes) == 8
