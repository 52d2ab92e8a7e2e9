"""Prefetcher: the wrapped source's batches in the same order, made ahead on a thread; errors reach the consumer
with their message; close() stops the thread."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from google.protobuf import text_format

from models.data import Prefetcher, make_source, write_lmdb
from models.schema import pb

pytest.importorskip("lmdb")


def lmdb_layer(path):
    return text_format.Parse(f'name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "{path}" '
                             'batch_size: 4 backend: LMDB } transform_param { crop_size: 5 mirror: true }',
                             pb.LayerParameter())


@pytest.fixture
def db(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (10, 1, 8, 8), dtype=np.uint8)
    return write_lmdb(tmp_path / "db", x, np.arange(10))


def test_prefetcher_equals_the_plain_source_batch_for_batch(db):
    plain = make_source(lmdb_layer(db), "TRAIN", seed=3)
    with Prefetcher(make_source(lmdb_layer(db), "TRAIN", seed=3), depth=2) as p:
        assert p.shapes() == plain.shapes() and p.tops == plain.tops and p.name == "d"
        for _ in range(7):
            a, b = plain.next_batch(), p.next_batch()
            for top in a:
                np.testing.assert_array_equal(a[top], b[top])
    plain.close()


def test_batches_are_ready_before_the_consumer_asks(db):
    with Prefetcher(make_source(lmdb_layer(db), "TRAIN", seed=0), depth=3) as p:
        deadline = time.monotonic() + 5
        while p._queue.qsize() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p._queue.qsize() == 3  # full queue: the next three calls do not wait on the producer
        t0 = time.perf_counter()
        p.next_batch()
        assert time.perf_counter() - t0 < 0.05


class Failing:
    """A source whose third batch raises."""
    name, tops, prefetchable = "bad", ["x"], True

    def __init__(self):
        self.n = 0
        self.closed = False

    def shapes(self):
        return {"x": (1,)}

    def next_batch(self):
        self.n += 1
        if self.n == 3:
            raise ValueError("layer 'bad': record 3 is broken")
        return {"x": np.full(1, self.n, np.float32)}

    def close(self):
        self.closed = True


def test_exceptions_reach_the_consumer_with_their_message():
    src = Failing()
    p = Prefetcher(src)
    assert p.next_batch()["x"][0] == 1 and p.next_batch()["x"][0] == 2
    for _ in range(2):
        with pytest.raises(ValueError, match=r"^layer 'bad': record 3 is broken$"):
            p.next_batch()
    p.close()
    assert src.closed


def test_close_stops_the_thread(db):
    before = threading.active_count()
    p = Prefetcher(make_source(lmdb_layer(db), "TRAIN", seed=0), depth=1)
    p.next_batch()
    p.close()
    assert not p._thread.is_alive() and threading.active_count() == before
    with pytest.raises(RuntimeError, match="closed"):
        p.next_batch()
    p.close()  # idempotent
