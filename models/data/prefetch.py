"""Background prefetching of batches (Caffe's BasePrefetchingDataLayer / InternalThread).

A :class:`Prefetcher` makes up to ``depth`` batches ahead on a daemon thread, so a consumer faster than the data
never waits once the queue is full, and one slower than the data always finds a batch ready. The batches, and
their order, are exactly the wrapped source's. An exception raised while making a batch is re-raised (the same
exception object, message unchanged) by the consumer's next call to :meth:`next_batch`.
"""
from __future__ import annotations

import queue
import threading


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher:
    """Wrap a data source so its batches are made on a background thread.

    Parameters
    ----------
    source : DataSource
        From :func:`models.data.make_source`. A source fed from Python (``prefetchable = False``: MemoryData) is
        run in the caller's thread; its other methods (``set_input_arrays``) are reachable through the wrapper.
    depth : int
        Batches made ahead (Caffe's ``PREFETCH_COUNT`` is 3).

    Notes
    -----
    The interface is the source's: ``name``, ``tops``, ``shapes()``, ``next_batch()``, ``close()``, context
    manager. ``close()`` stops the thread, waits for it, and closes the source.
    """

    def __init__(self, source, depth: int = 3):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.source = source
        self.name, self.tops = source.name, list(source.tops)
        self._shapes = source.shapes()
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._failure = None
        self._thread = None
        if getattr(source, "prefetchable", True):
            self._thread = threading.Thread(target=self._produce, name=f"prefetch-{source.name}", daemon=True)
            self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._put(self.source.next_batch()):
                    return
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(_Failure(e))

    def shapes(self) -> dict:
        """The source's ``{top: shape}``."""
        return dict(self._shapes)

    def next_batch(self) -> dict:
        """The next batch of the source (waits only when the thread has not made it yet).

        Raises
        ------
        Exception
            Whatever the source raised while making this batch (and again on later calls).
        RuntimeError
            After :meth:`close`.
        """
        if self._thread is None:
            return self.source.next_batch()
        if self._failure is not None:
            raise self._failure.exc
        while True:
            if self._stop.is_set():
                raise RuntimeError(f"prefetcher of layer '{self.name}' is closed")
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(f"prefetch thread of layer '{self.name}' stopped") from None
        if isinstance(item, _Failure):
            self._failure = item
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the thread, drop the batches made ahead, close the source (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
        self.source.close()

    def __getattr__(self, name):
        # only reached for names the wrapper lacks (set_input_arrays, batch_size, ...)
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self._stop.set()
        except Exception:
            pass
