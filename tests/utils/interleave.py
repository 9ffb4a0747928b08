"""Run store writers in an order WE choose: one S3 request at a time, against a real server.

Each writer is a thread with its own :class:`~stockml.storage.Store` whose S3 client (its
``objects.client``) is wrapped by :class:`GatedClient`: before every request (PUT, GET, LIST, DELETE) the writer waits for the
:class:`Scheduler` to pick it. The scheduler picks among the waiting writers with a seeded RNG,
so a seed names one interleaving of the writers' requests, and may "crash" a writer at a
request (the request is not made and the writer stops there, as a killed Lambda does).
The requests themselves go to the real moto_server unchanged.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stockml.storage import Store
from stockml.storage.objects import _mark_pool_thread


class Crash(BaseException):  # noqa: N818 - not an error: the simulated end of a process
    """Raised in a writer at the request where the scheduler kills it."""


@dataclass
class Outcome:
    """What happened to one writer: its first and last scheduler steps, and how it ended."""

    name: str
    started: int | None = None
    ended: int | None = None
    result: Any = None
    crashed: bool = False
    error: BaseException | None = None


@dataclass
class Scheduler:
    seed: int
    crash_probability: float = 0.0
    between: Callable[[int], None] | None = None  # called (with the step) between requests
    # scripted start: (writer, stop) = let the writer make at least one request, then more
    # until the one it waits to make starts with ``stop`` (None: until it ends); then the
    # seeded choice takes over
    script: list[tuple[str, str | None]] = field(default_factory=list)
    steps: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._cond = threading.Condition()
        self._state: dict[str, str] = {}  # running | waiting | done
        self._granted: str | None = None
        self._crash: str | None = None
        self._pending: dict[str, str] = {}
        self._scripted = 0  # requests granted under the current script entry

    # called from the writer threads --------------------------------------------------
    def request(self, name: str, what: str, call: Callable[[], Any]) -> Any:
        with self._cond:
            self._state[name] = "waiting"
            self._pending[name] = what
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._granted == name)
            self._granted = None
            crash = self._crash == name
            self._state[name] = "running"
            self.steps.append((name, what))
            self._cond.notify_all()
        if crash:
            raise Crash(f"{name} killed before {what}")
        return call()

    def _finish(self, name: str) -> None:
        with self._cond:
            self._state[name] = "done"
            self._cond.notify_all()

    # called from the test -----------------------------------------------------------
    def run(
        self,
        writers: dict[str, Callable[[Store], Any]],
        stores: dict[str, Store],
        outcomes: dict[str, Outcome] | None = None,
    ) -> dict[str, Outcome]:
        """Run each writer (``fn(store)``) in its thread until all end; returns their outcomes.

        ``outcomes`` (filled as writers end) lets ``between`` see which writers are done.
        """
        outcomes = outcomes if outcomes is not None else {}
        outcomes.update({name: Outcome(name) for name in writers})
        crashable = set(writers) if self.crash_probability else set()

        def body(name: str) -> None:
            _mark_pool_thread()  # the Store's own thread pool would escape the gate
            try:
                outcomes[name].result = writers[name](stores[name])
            except Crash:
                outcomes[name].crashed = True
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                outcomes[name].error = exc
            finally:
                outcomes[name].ended = len(self.steps)
                self._finish(name)

        with self._cond:
            self._state = {name: "running" for name in writers}
        threads = [threading.Thread(target=body, args=(n,), daemon=True) for n in writers]
        for t in threads:
            t.start()
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        self._granted is None and all(s != "running" for s in self._state.values())
                    ),
                    timeout=120,
                )
                waiting = sorted(n for n, s in self._state.items() if s == "waiting")
                if not waiting:
                    break
                while self.script:
                    scripted, stop = self.script[0]
                    if self._state[scripted] == "done" or (
                        self._scripted
                        and stop is not None
                        and self._pending[scripted].startswith(stop)
                    ):
                        self.script.pop(0)
                        self._scripted = 0
                    else:
                        break
                if self.script:
                    name = self.script[0][0]
                    self._scripted += 1
                else:
                    name = self._rng.choice(waiting)
                if outcomes[name].started is None:
                    outcomes[name].started = len(self.steps)
                self._crash = None
                if name in crashable and self._rng.random() < self.crash_probability:
                    self._crash = name
                    crashable.discard(name)
                self._granted = name
                self._cond.notify_all()
            if self.between is not None:
                with self._cond:  # wait until the granted request is made
                    self._cond.wait_for(
                        lambda: (
                            self._granted is None
                            and all(s != "running" for s in self._state.values())
                        ),
                        timeout=120,
                    )
                self.between(len(self.steps))
        for t in threads:
            t.join(timeout=60)
        return outcomes


class _GatedPaginator:
    def __init__(self, real: Any, gate: Scheduler, name: str) -> None:
        self._real, self._gate, self._name = real, gate, name

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self._gate.request(
            self._name, f"LIST {kwargs.get('Prefix')}", lambda: list(self._real.paginate(**kwargs))
        )


class GatedClient:
    """The S3 client of one writer: every request waits for the scheduler's go."""

    def __init__(self, real: Any, gate: Scheduler, name: str) -> None:
        self._real, self._gate, self._name = real, gate, name

    def get_paginator(self, operation: str) -> _GatedPaginator:
        return _GatedPaginator(self._real.get_paginator(operation), self._gate, self._name)

    def put_object(self, **kwargs: Any) -> Any:
        return self._gate.request(
            self._name, f"PUT {kwargs['Key']}", lambda: self._real.put_object(**kwargs)
        )

    def get_object(self, **kwargs: Any) -> Any:
        return self._gate.request(
            self._name, f"GET {kwargs['Key']}", lambda: self._real.get_object(**kwargs)
        )

    def delete_objects(self, **kwargs: Any) -> Any:
        keys = [o["Key"] for o in kwargs["Delete"]["Objects"]]
        return self._gate.request(
            self._name, f"DELETE {keys}", lambda: self._real.delete_objects(**kwargs)
        )


def fresh(store: Store, raw_prefix: str) -> Store:
    """A new Store like ``store`` (nothing cached) on another table, sharing its S3 client.

    A botocore client costs ~0.5 s to create on a busy machine, and is thread-safe.
    """
    clone = copy.copy(store)
    clone.raw_prefix = raw_prefix
    clone._shared_frames = {}
    clone._shared_index = {}
    clone.objects = store.objects.with_client(store.objects.client)  # its own thread pool
    return clone


def gated(store: Store, gate: Scheduler, name: str) -> Store:
    """A fresh copy of ``store`` whose S3 requests wait for ``gate``."""
    clone = fresh(store, store.raw_prefix)
    clone.objects = store.objects.with_client(GatedClient(store.objects.client, gate, name))
    return clone
