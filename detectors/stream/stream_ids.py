"""The stream scorer's stream ids: which row of the per-stream arrays each stream id names.

:class:`StreamIds` is a mixin of :class:`~sparsernn.detectors.stream.scorer.StreamScorer`, which owns
``stream_ids`` (ids in order of arrival), ``_rows_of`` (id -> row) and ``_grow(n)`` (fresh state for
``n`` new rows). Ids are str or int; checking a call's ids changes nothing, and new ids get rows only
once everything in the call is checked.
"""
from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence

import numpy as np


class StreamIds:
    """Stream-id bookkeeping of :class:`~sparsernn.detectors.stream.scorer.StreamScorer` (see the module doc)."""

    def resolve_streams(self, streams: Sequence[Hashable]) -> tuple[np.ndarray, list]:
        """Row of each stream id (an id not seen yet gets the row it would be given) and the new
        ids, in order; checks the ids and changes nothing."""
        rows = np.empty(len(streams), dtype=np.int64)
        new: dict = {}  # new id -> the row it would get
        known, first_new_row = self._rows_of.get, len(self.stream_ids)
        for i, sid in enumerate(streams):
            kind = type(sid)
            # A plain int or str passes at once (the per-call hot path of many streams); anything
            # else is checked, so True, np.True_ or 1.0 never alias the stream 1 (equal hashes).
            if kind is not int and kind is not str and (
                    isinstance(sid, (bool, np.bool_)) or not isinstance(sid, (str, int, np.integer))):
                raise TypeError(f"stream ids must be str or int; got {sid!r} ({type(sid).__name__})")
            row = known(sid)
            if row is None:
                sid = sid if isinstance(sid, str) else int(sid)
                row = new.setdefault(sid, first_new_row + len(new))
            rows[i] = row
        if len(set(rows.tolist())) != len(rows):
            raise ValueError(f"streams must not repeat an id within one call; got {list(streams)}")
        return rows, list(new)

    def _register(self, new: list) -> None:
        """Give the ids ``new`` (checked by :meth:`resolve_streams`) rows with fresh state."""
        for sid in new:
            self._rows_of[sid] = len(self.stream_ids)
            self.stream_ids.append(sid)
        self._grow(len(new))

    def stream_rows(self, streams: Sequence[Hashable]) -> np.ndarray:
        """Row of each stream id, allocating fresh state for ids not seen yet."""
        rows, new = self.resolve_streams(streams)
        if new:
            self._register(new)
        return rows

    def row_of(self, stream: Hashable) -> int | None:
        """Row of ``stream`` in the per-stream arrays, or None when it has not been seen."""
        return self._rows_of.get(stream)

    def restore_streams(self, stream_ids: list) -> None:
        """Give a scorer without streams the streams ``stream_ids`` (distinct str / int ids, in row
        order) with fresh state; :meth:`load_state_arrays` then sets their saved state."""
        if self.stream_ids:
            raise ValueError(f"restore_streams needs a scorer without streams; this one has {len(self.stream_ids)}")
        ids = list(stream_ids)
        if len(set(ids)) != len(ids) or not all(isinstance(i, (str, int)) and not isinstance(i, bool)
                                                for i in ids):
            raise ValueError(f"stream_ids must be distinct str / int ids; got {ids!r}")
        self._register(ids)

    @staticmethod
    def _ids(streams) -> list:
        """The ids a call names: ``streams`` as a list (None: stream 0)."""
        if streams is None:
            return [0]
        if isinstance(streams, (str, int, np.integer)):
            return [streams]
        try:
            return list(streams)
        except TypeError:
            raise TypeError(f"streams must be a stream id (str or int) or a sequence of them; got {streams!r}") \
                from None

    def _with_streams(self, streams) -> "StreamScorer":
        """This scorer when it knows every id of ``streams``; else a copy that has them too, in their
        initial state, and shares nothing that scoring could change (scoring never registers an id)."""
        _, new = self.resolve_streams(self._ids(streams))
        if not new:
            return self
        clone = copy.copy(self)
        clone.stream_ids, clone._rows_of = list(self.stream_ids), dict(self._rows_of)
        clone._register(new)  # _grow builds new arrays: this scorer's are not touched
        return clone

    def check_streams(self, streams, n: int) -> list:
        """The ids of a call's ``n`` streams (``streams``: an id, a sequence of ``n`` ids, or None for
        stream 0 when ``n == 1``); raises ``ValueError`` when their number is not ``n``."""
        if streams is None:
            if n != 1:
                raise ValueError(f"streams must name the {n} streams of a batch; got None")
            return [0]
        streams = self._ids(streams)
        if len(streams) != n:
            raise ValueError(f"streams has {len(streams)} ids but the batch has {n} streams")
        return streams
