"""``StreamWrapper``: what every river-style wrapper around a :class:`StreamScorer` shares.

A wrapper (:class:`SeasonalSurprise`, :class:`AnomalyLikelihood`,
:class:`PeakSuppression`, :class:`SpatialAnomaly`, :class:`WindowNovelty`) has the scorer's protocol
(``score_one``, ``learn_one``, ``score_many``, ``learn_many``, ``process``,
``stream_ids``) and adds one behaviour. Wrappers nest; the innermost object is
always a :class:`StreamScorer`, which owns the stream ids: a stream's row in
every wrapper's per-stream arrays is its row in the scorer. The protocol is
written once: :class:`ScoreTransform` for wrappers whose score depends on the
wrapped score only, :class:`ValueTransform` for those that also read the point.

Each wrapper keeps its per-stream state in NumPy arrays whose first axis is
the stream row (the names in ``STATE``) and its settings in JSON-able values
(:meth:`settings`, the keyword arguments of its constructor), so a whole
chain is saved as arrays + JSON by :func:`~sparsernn.detectors.stream.persistence.save_stream`
and continues bit-identically after :meth:`load`.
"""
from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import ClassVar

import numpy as np


WRAPPERS: dict[str, type] = {}
"""Every :class:`StreamWrapper` subclass by class name (filled as the classes are defined): the
wrappers :func:`~sparsernn.detectors.stream.persistence.load_stream` can rebuild."""


class StreamWrapper:
    """Base class of the stream wrappers (see the module doc).

    Subclasses set ``STATE`` (names of per-stream arrays, first axis = stream
    row), implement :meth:`_grow` (append state for ``n`` new streams) and
    :meth:`settings`, and keep the wrapped object in ``self.stream`` (or
    ``self.scorer``, see ``INNER``). Defining a subclass registers it in
    :data:`WRAPPERS`, so chains holding it save and load like the built-in ones.
    """

    STATE: ClassVar[tuple[str, ...]] = ()
    INNER: ClassVar[str] = "stream"

    @property
    def inner(self):
        """The wrapped object (a wrapper or the :class:`StreamScorer`)."""
        return getattr(self, self.INNER)

    @property
    def stream_ids(self) -> list:
        return self.inner.stream_ids

    @property
    def _scorer(self):
        """The innermost :class:`StreamScorer`."""
        inner = self.inner
        while isinstance(inner, StreamWrapper):
            inner = inner.inner
        return inner

    @property
    def n_channels(self) -> int:
        return self._scorer.n_channels

    def _n_rows(self) -> int:
        return len(getattr(self, self.STATE[0]))

    def _grow(self, n: int) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _sync(self) -> None:
        """Give the streams the scorer allocated since the last call their fresh state."""
        n = len(self.stream_ids) - self._n_rows()
        if n > 0:
            self._grow(n)

    def _rows(self, streams) -> np.ndarray:
        """Rows (B,) of stream ids ``streams`` (allocating new ones in the scorer and here)."""
        rows = np.asarray(self._scorer.stream_rows(streams), dtype=np.int64)
        self._sync()
        return rows

    def _row(self, stream: Hashable) -> int:
        """:meth:`_rows` of one stream, without building arrays for a known one (one-point calls)."""
        row = self._scorer.row_of(stream)
        if row is None:
            row = int(self._scorer.stream_rows([stream])[0])
        if row >= self._n_rows():
            self._sync()
        return row

    def _streams(self, streams, n: int) -> list:
        return self._scorer.check_streams(streams, n)

    def _with_streams(self, streams):
        """This chain when its scorer knows every id of ``streams``; else a copy of the chain that has
        them too, in their initial state (sharing nothing scoring could change): scoring a new id
        scores it from the initial state without registering it."""
        inner = self.inner._with_streams(streams)
        if inner is self.inner:
            return self
        clone = copy.copy(self)
        setattr(clone, self.INNER, inner)
        clone._sync()  # _grow builds new arrays: this chain's are not touched
        return clone

    def classify(self, score: float) -> bool:
        """The wrapped stream's alarm rule (``score >= alarm_threshold`` where there is one)."""
        return self.inner.classify(score)

    def learn_many(self, X, streams=None, timestamps=None) -> None:
        """Advance each stream by its point in ``X`` (n_streams[, n_channels]): one batched step."""
        self.process(np.asarray(X)[None], streams, None if timestamps is None else [timestamps])

    def _transform_block(self, scores: np.ndarray, X, rows: np.ndarray,
                         learn: bool) -> np.ndarray:  # pragma: no cover - ScoreTransform / ValueTransform define it
        """This wrapper's scores (T, B) from the wrapped stream's ``scores`` (T, B) of the block ``X``
        (T, B[, n_channels]) of streams ``rows`` (B,); with ``learn`` its state advances past the block."""
        raise NotImplementedError

    def score_many(self, X, streams=None) -> np.ndarray:
        """Scores (n_streams,) of one point per stream, ``X`` (n_streams[, n_channels]); changes no state."""
        view = self._with_streams(streams)
        if view is not self:
            return view.score_many(X, streams)
        scores = np.asarray(self.inner.score_many(X, streams), dtype=float)
        rows = self._rows(self._streams(streams, len(scores)))
        return self._transform_block(scores[None], np.asarray(X)[None], rows, learn=False)[0]

    def process(self, X, streams=None, timestamps=None) -> np.ndarray:
        """Score, then learn, a block (T, n_streams[, n_channels]); returns scores (T, n_streams)."""
        scores = np.asarray(self.inner.process(X, streams, timestamps), dtype=float)
        rows = self._rows(self._streams(streams, scores.shape[1]))
        return self._transform_block(scores, X, rows, learn=True)

    # ------------------------------------------------------------ persistence
    def __init_subclass__(cls, **kwargs) -> None:
        """Register every wrapper class by name, so that a saved chain naming it can be loaded."""
        super().__init_subclass__(**kwargs)
        known = WRAPPERS.get(cls.__name__)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"a stream wrapper named {cls.__name__!r} is already registered ({known.__module__}."
                            f"{known.__qualname__}); saved chains name wrappers by class name, so pick another name")
        WRAPPERS[cls.__name__] = cls

    def settings(self) -> dict:  # pragma: no cover - every subclass overrides
        """JSON-able constructor keyword arguments (the wrapped stream excluded)."""
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Per-stream arrays by name (the names in ``STATE``; copies, first axis = stream row)."""
        self._sync()
        return {name: np.array(getattr(self, name), copy=True) for name in self.STATE}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the per-stream arrays written by :meth:`state_arrays`."""
        for name in self.STATE:
            setattr(self, name, np.array(arrays[name], copy=True))

    def save(self, path) -> None:
        """Write the whole chain (scorer, detector and every wrapper) to ``path``."""
        from .persistence import save_stream

        save_stream(self, path)

    @classmethod
    def load(cls, path):
        """Read a chain written by :meth:`save` whose outermost wrapper is this class."""
        from .persistence import load_stream

        return load_stream(path, expect=cls)


class ScoreTransform(StreamWrapper):
    """A wrapper whose score is a function of the wrapped stream's score and its own
    per-stream state (:class:`AnomalyLikelihood`, :class:`PeakSuppression`).

    Subclasses implement :meth:`_transform` (a block of scores, all streams at
    once); :meth:`_transform_one` may give a faster one-point path. The river
    protocol is written once here: the wrapped stream scores (and checks) the
    point first, then the transform runs; ``learn`` advances both.
    """

    def _transform(self, scores: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:  # pragma: no cover
        """Transformed scores (T, B) of the wrapped stream's scores (T, B) of streams ``rows`` (B,)."""
        raise NotImplementedError

    def _transform_one(self, score: float, row: int, learn: bool) -> float:
        """:meth:`_transform` of one score of one stream."""
        return float(self._transform(np.array([[score]]), np.array([row]), learn)[0, 0])

    def score_one(self, x, timestamp=None, stream: Hashable = 0) -> float:
        """Score of point ``x`` for ``stream``; changes no state."""
        if self._scorer.row_of(stream) is None or isinstance(stream, bool):
            return self._with_streams([stream]).score_one(x, timestamp, stream)
        score = self.inner.score_one(x, timestamp=timestamp, stream=stream)
        return self._transform_one(float(score), self._row(stream), learn=False)

    def learn_one(self, x, timestamp=None, stream: Hashable = 0) -> None:
        """Advance ``stream`` by ``x``: the wrapped stream, then this wrapper's state."""
        score = self.inner.score_one(x, timestamp=timestamp, stream=stream)
        self.inner.learn_one(x, timestamp=timestamp, stream=stream)
        self._transform_one(float(score), self._row(stream), learn=True)

    def _transform_block(self, scores: np.ndarray, X, rows: np.ndarray, learn: bool) -> np.ndarray:
        return self._transform(scores, rows, learn)


class ValueTransform(StreamWrapper):
    """A wrapper whose score is a function of the wrapped stream's score, the point's values and
    its own per-stream state (:class:`WindowNovelty`, :class:`SpatialAnomaly`).

    Subclasses implement :meth:`_combine` (a block, all streams at once); the
    river protocol is written once here: the point is checked first, the
    wrapped stream scores (or learns) it, then :meth:`_combine` runs.
    """

    def _combine(self, scores: np.ndarray, values: np.ndarray, rows: np.ndarray,
                 learn: bool) -> np.ndarray:  # pragma: no cover - every subclass overrides
        """Scores (T, B) from the wrapped stream's scores (T, B) and the values (T, B, n_channels) of
        streams ``rows`` (B,); with ``learn`` the state advances past the block."""
        raise NotImplementedError

    def score_one(self, x, timestamp=None, stream: Hashable = 0) -> float:
        """Score of ``x`` for ``stream``; changes no state."""
        if self._scorer.row_of(stream) is None or isinstance(stream, bool):
            return self._with_streams([stream]).score_one(x, timestamp, stream)
        score = self.inner.score_one(x, timestamp=timestamp, stream=stream)
        values = self._scorer.as_point(x)[None]
        return float(self._combine(np.array([[score]], dtype=float), values, self._rows([stream]), False)[0, 0])

    def learn_one(self, x, timestamp=None, stream: Hashable = 0) -> None:
        """Advance ``stream`` by ``x``: the wrapped stream, then this wrapper's state."""
        values = self._scorer.as_point(x)[None]
        self.inner.learn_one(x, timestamp=timestamp, stream=stream)
        self._combine(np.zeros((1, 1)), values, self._rows([stream]), True)

    def _transform_block(self, scores: np.ndarray, X, rows: np.ndarray, learn: bool) -> np.ndarray:
        return self._combine(scores, self._scorer.as_block(X), rows, learn)
