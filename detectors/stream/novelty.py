"""``WindowNovelty``: a second likelihood, of how far the recent window is from every earlier one.

A wrapper in the river sense around a stream of scores in [0, 1] (typically an
:class:`~sparsernn.detectors.AnomalyLikelihood`): same protocol, one added
behaviour. Per stream:

1. the values are scaled by the detector's fit-time centre and scale
   (``u = (x - center_) / scale_``, the scorer's units without an online
   normaliser);
2. the *embedding* at row ``t`` is the means of ``window`` consecutive blocks
   of ``block`` rows, the last one ending at ``t`` (``window * block`` rows in
   all, every channel), rounded to float32 (the memory's precision; distances
   are computed in float64 from it, so a window seen before is exactly 0);
3. every ``block`` rows the embedding is stored in a memory of the last
   ``memory`` embeddings (a ring);
4. the *novelty* at ``t`` is the root-mean-square distance from its embedding
   to the nearest stored embedding that ends at least ``exclude`` rows (default
   ``window * block``: windows that do not overlap) before ``t``; 0 while
   there is none;
5. the novelty goes through NAB's likelihood estimator (the same one as
   :class:`AnomalyLikelihood`, with its own state) and the score is the
   maximum of that likelihood score and the wrapped stream's score times
   ``inner_weight`` (default 1.0).

Why: a forecaster's surprise sees a change of context (a daily peak that
does not come, spikes that become frequent, a level held too long) only as
the one step where it starts; a window that is unlike any window seen before
stays novel for as long as the new pattern lasts, until it has been seen once.
This is the "never seen this sequence" signal of HTM's sequence memory and of
ARTime's new categories, here a nearest-neighbour distance (as in kNN-CAD).
It is causal: row ``t`` is judged against embeddings of rows before it only.
The search is compiled (:mod:`~sparsernn.detectors.stream.batched_search`, each
stream's rows of a call together, or :mod:`~sparsernn.detectors.stream.nearest`,
row by row); the plain NumPy loop both are tested against is
:meth:`WindowNovelty._novelty_reference`.
"""
from __future__ import annotations

import numpy as np

from .likelihood import LikelihoodEstimator
from .batched_search import nearest_windows_batched
from .nearest import SCAN, nearest_windows
from .search_index import SearchIndex, build_index
from ..checks import check_int, check_weight
from ..normalization import clip_units
from .wrappers import ValueTransform


class WindowNovelty(LikelihoodEstimator, ValueTransform):
    """The wrapped score, or the likelihood of the recent window's nearest-neighbour distance if higher.

    Parameters
    ----------
    stream : AnomalyLikelihood, or any wrapper / StreamScorer with the protocol
        Gives a score in [0, 1] per point.
    block : int
        Rows per block of the embedding (its time resolution).
    window : int, default 8
        Blocks per embedding.
    memory : int, default 8192
        Embeddings kept per stream (the oldest are forgotten).
    exclude : int, optional
        A stored embedding ending fewer than ``exclude`` rows before ``t`` is
        not a neighbour of ``t`` (default ``window * block``).
    inner_weight : float in [0, 1], default 1.0
        Factor on the wrapped stream's score before the maximum: below 1 the
        novelty's likelihood outranks the wrapped score near the top of the
        scale (``SelectiveUpdateNAB`` passes its ``surprise_weight``).
    learning_period, estimation_samples, averaging_window, historic_window, reestimation_period : int
        The likelihood of the novelty (see :class:`LikelihoodEstimator`; nupic's
        defaults 288, 100, 10, 8640, 100).

    Attributes (first axis: the stream row)
    ---------------------------------------
    ring : (n_streams, window * block, n_channels) the last scaled values, a ring indexed by ``seen``
    bank : (n_streams, memory, window * n_channels) float32, stored embeddings, a ring indexed by ``stored``
    bank_rows : (n_streams, memory) int64, the row (``seen``) each embedding ends at; -1 where empty
    stored : (n_streams,) int64, embeddings stored
    recent, history, seen, mean, std, last_q : the novelty likelihood's state (:class:`LikelihoodEstimator`)

    Examples
    --------
    >>> stream = WindowNovelty(AnomalyLikelihood(StreamScorer(detector)), block=4)  # doctest: +SKIP
    >>> scores = stream.process(block_of_points)                                   # doctest: +SKIP
    """

    STATE = LikelihoodEstimator.STATE + ("ring", "bank", "bank_rows", "stored")
    scan_limit = SCAN
    """Streams with at most this many stored embeddings are compared with all of them, the others searched
    through the index (the same novelties; a speed setting, not saved)."""
    batched = True
    """Search each stream's rows of a call together (:func:`~sparsernn.detectors.stream.batched_search.
    nearest_windows_batched`) rather than row by row (:func:`~sparsernn.detectors.stream.nearest.
    nearest_windows`): the same novelties and state; a speed setting, not saved (tests run both)."""

    def __init__(self, stream, block: int, window: int = 8, memory: int = 8192, exclude: int | None = None,
                 learning_period: int = 288, estimation_samples: int = 100, averaging_window: int = 10,
                 historic_window: int = 8640, reestimation_period: int = 100, inner_weight: float = 1.0) -> None:
        super().__init__(learning_period, estimation_samples, averaging_window, historic_window,
                         reestimation_period)
        self.inner_weight = check_weight("inner_weight", inner_weight)
        self.stream = stream
        self.block = check_int("block", block, 1)
        self.window = check_int("window", window, 1)
        self.memory = check_int("memory", memory, 1)
        self.exclude = self.window * self.block if exclude is None else check_int("exclude", exclude, 1)
        detector = self._scorer.detector
        self._center = np.asarray(detector.center_, dtype=float)
        self._scale = np.asarray(detector.scale_, dtype=float)
        d = self.n_channels
        self.ring = np.zeros((0, self.span, d))
        self.bank = np.zeros((0, self.memory, self.window * d), dtype=np.float32)
        self.bank_rows = np.zeros((0, self.memory), dtype=np.int64)
        self.stored = np.zeros(0, dtype=np.int64)
        self._index = SearchIndex(0, self.memory, self.window * d)

    @property
    def span(self) -> int:
        """Rows per embedding: ``window * block``."""
        return self.window * self.block

    def settings(self) -> dict:
        return {"block": self.block, "window": self.window, "memory": self.memory, "exclude": self.exclude,
                **self._estimator_settings(), "inner_weight": self.inner_weight}

    def _grow(self, n: int) -> None:
        LikelihoodEstimator._grow(self, n)
        self.ring = np.concatenate([self.ring, np.zeros((n,) + self.ring.shape[1:])])
        self.bank = np.concatenate([self.bank, np.zeros((n,) + self.bank.shape[1:], dtype=np.float32)])
        self.bank_rows = np.concatenate([self.bank_rows, np.full((n, self.memory), -1, dtype=np.int64)])
        self.stored = np.concatenate([self.stored, np.zeros(n, dtype=np.int64)])
        self._index = self._index.grow(n)

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().load_state_arrays(arrays)
        self.reindex()

    def reindex(self, build: bool = False) -> None:
        """Drop the search's index of the stored embeddings (a cache, not saved): it is rebuilt from the
        bank, stream by stream, on the next call (``build``: now, every stream). Needed only after writing
        ``bank`` / ``bank_rows`` in place without changing ``stored`` (a changed ``stored`` rebuilds the
        stream's index anyway)."""
        self._index = SearchIndex(len(self.stored), self.memory, self.bank.shape[2])
        if build:
            build_index(self.stored, self.bank, self.bank_rows, self._index.arrays())

    # ------------------------------------------------------------ the novelty
    def _novelty(self, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Novelties (T, B) of raw ``values`` (T, B, C) of distinct streams ``rows`` (B,), in time order.

        With ``learn`` the ring, the memory and ``stored`` advance (``seen`` is
        the likelihood's and advances in :meth:`_block`). The search is
        compiled: each stream's rows together
        (:func:`~sparsernn.detectors.stream.batched_search.nearest_windows_batched`, with ``batched``)
        or row by row (:func:`~sparsernn.detectors.stream.nearest.nearest_windows`), each row compared
        with the filled slots it may see only, the same results either way; :meth:`_novelty_reference`
        is the plain NumPy loop both are tested against.
        """
        rows = np.asarray(rows, dtype=np.int64)
        with np.errstate(over="ignore"):
            scaled = clip_units((np.asarray(values, dtype=float) - self._center) / self._scale)
        out = np.zeros(scaled.shape[:2])
        if len(self._index.count) != len(self.stored):  # the state was replaced
            self.reindex()
        if scaled.shape[0] and len(rows):
            kernel = nearest_windows_batched if self.batched else nearest_windows
            kernel(np.ascontiguousarray(scaled), rows, self.ring, self.seen, self.stored, self.bank, self.bank_rows,
                   self.window, self.block, self.exclude, bool(learn), out, int(self.scan_limit),
                   self._index.arrays())
        return out

    def _novelty_reference(self, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """:meth:`_novelty`, plainly: one time step at a time, every stream against all ``memory`` slots.

        The definition the compiled search (:func:`~sparsernn.detectors.stream.nearest.nearest_windows`)
        is tested against; same results, same state after the call.
        """
        rows = np.asarray(rows, dtype=np.int64)
        B, span, block = len(rows), self.span, self.block
        contiguous = B > 0 and np.array_equal(rows, np.arange(rows[0], rows[0] + B))
        part = slice(int(rows[0]), int(rows[0]) + B) if contiguous else rows
        ring = self.ring[rows]  # (B, span, C) copy
        seen, stored = self.seen[rows].copy(), self.stored[rows].copy()
        if not learn:
            bank, bank_rows = self.bank[part], self.bank_rows[part]  # read only
        lanes, offsets = np.arange(B), np.arange(span)
        out = np.zeros(values.shape[:2])
        with np.errstate(over="ignore"):
            scaled = clip_units((values - self._center) / self._scale)  # bounded, in robust units
        for t, u in enumerate(scaled):
            ring[lanes, seen % span] = u
            ordered = ring[lanes[:, None], (seen[:, None] + 1 + offsets) % span]  # oldest first
            # rounded to the bank's precision (float32), then compared in float64
            embedding = ordered.reshape(B, self.window, block, -1).mean(2).reshape(B, -1).astype(np.float32)
            complete = seen + 1 >= span
            if learn:
                bank, bank_rows = self.bank[part], self.bank_rows[part]
            usable = (bank_rows >= 0) & (bank_rows <= (seen - self.exclude)[:, None])
            if usable.any():
                distance = ((bank.astype(float) - embedding[:, None, :].astype(float)) ** 2).mean(-1)
                nearest = np.where(usable, distance, np.inf).min(1)
                out[t] = np.where(complete & usable.any(1), np.sqrt(nearest), 0.0)
            if learn:
                keep = np.flatnonzero(complete & ((seen + 1) % block == 0))
                if len(keep):
                    slot = stored[keep] % self.memory
                    self.bank[rows[keep], slot] = embedding[keep]
                    self.bank_rows[rows[keep], slot] = seen[keep]
                    stored[keep] += 1
            seen = seen + 1
        if learn:
            self.ring[rows], self.stored[rows] = ring, stored
        return out

    def _combine(self, scores: np.ndarray, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """max(inner_weight * the wrapped scores (T, B), likelihood scores of the novelties of ``values`` (T, B, C))."""
        novelty = self._novelty(values, rows, learn)
        return np.maximum(self.inner_weight * scores, self._block(novelty, rows, learn))
