"""Online learning of the stream scorer's forecaster: one model per stream, learned while it streams.

:class:`OnlineLearning` holds the settings (``StreamScorer(detector, learn=OnlineLearning(...))``);
:class:`OnlineLearner` holds, per stream, the forecaster's weights, Adam's moments and the
window buffers, and advances a block of streams: it scores each point with the stream's
current weights *before* it learns from it (causal), and every ``every`` points of a stream
takes one Adam step of truncated back-propagation over the stream's last ``window``
normalised points.

Per-stream weights, batched
---------------------------
Each stream has its own copy of every trainable parameter of the forecaster, stacked on a
leading stream axis (``(n_streams, *shape)``), so a stream adapts to itself alone (NAB scores
each file as its own stream; a shared model would let one stream's data move another's
scores). One call runs all the streams of a block together. Where core's per-sample path
covers the layer (:func:`~sparsernn.core.per_sample.per_sample_unsupported` is None: the
detector's default event-gated GRU), the layer runs through
:func:`~sparsernn.core.per_sample.per_sample_forward` (a hand-written backward that forms each
weight's gradient once per window) and the head through the forecaster's
``predict_per_stream``; otherwise the
forecaster's own ``forward`` (core's ``reference`` backend) runs under :func:`torch.func.vmap`
over the stream axis of the weights, the state and the data (``functional_call``; a block of
one stream skips ``vmap``). Either way one backward pass of the sum of the streams' losses
gives every stream's gradient (the sum's gradient with respect to a stream's weights is that
stream's own), and the learner treats the parameters as ``torch.optim`` does: by name, opaque,
never reading how a layer packs them (``OnlineLearner.fast`` tells which path runs).

Cost: memory per stream is three copies of the parameters (weights, Adam's two moments;
``float32``) plus ``window x (n_channels + 1)`` window entries and
``(window // every + 1) x state_size`` checkpointed states. Time per point and stream: the
forward of one step with the stream's own weights (a batched matrix-vector product: every
step reads every stream's weights, where a shared model would read them once), plus, every
``every`` points, a forward and backward over ``window`` steps. See ``docs/online_learning.md``
for measured numbers.

Window and checkpoints
----------------------
The window of a learning step ending at count ``e`` (points learned) is the points
``e - window .. e - 1``; it starts from the recurrent state the stream had when it entered
point ``e - window`` (computed with the weights of that time: truncated back-propagation),
kept as a *checkpoint*: a state is stored only at counts ``n`` with ``(n + window) % every
== 0``, in slot ``(n // every) % (window // every + 1)``, so a slot is never overwritten
before it is used. A learning step's loss is the Gaussian negative log-likelihood of the
window's points 2..window under the forecasts made at the points before them (points whose
surprise was above ``skip_anomalous_above`` left out), plus the layer's ``aux_loss()``, as
in :func:`~sparsernn.detectors.training.train_forecaster`; gradients are clipped per stream
to ``max_grad_norm``. A stream learns once it has ``window`` points, then every ``every``
points (counts that are multiples of ``every``). After a step the stream's state and the
forecast of its next point stay as computed; the next point is stepped with the new weights.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.func import functional_call, vmap

from ...core.per_sample import per_sample_forward, per_sample_unsupported
from ..checks import check_int, check_number
from ..surprise import surprise

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class OnlineLearning:
    """Settings of online learning for :class:`~sparsernn.detectors.stream.StreamScorer` (``learn=``).

    Parameters
    ----------
    learning_rate : float > 0, default 1e-4
        Adam's step size. Adam rather than SGD: its per-parameter steps do not scale with the
        gradient, whose size varies by orders of magnitude between a quiet and a noisy stream
        (the loss is a negative log-likelihood in each stream's own units), so one rate suits
        every stream; the detector was fitted with Adam too.
    window : int >= 2, default 32
        Points of truncated back-propagation per learning step (the detector's default
        training window).
    every : int >= 1, default 1
        A stream learns after each point whose count (points learned) is a multiple of
        ``every`` and at least ``window``.
    skip_anomalous_above : float > 0, optional
        Points whose surprise (the scorer's score, ``0.5 z^2`` averaged over channels, e.g.
        12.5 for 5 standard deviations) was above this are left out of the loss; a step whose
        window has no point left is skipped (no Adam step). None learns from every point.
    max_grad_norm : float > 0, default 1.0
        Per-stream clip of the gradient's norm (as the detector's training does).
    """

    learning_rate: float = 1e-4
    window: int = 32
    every: int = 1
    skip_anomalous_above: float | None = None
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "learning_rate", check_number("learning_rate", self.learning_rate, 0.0,
                                                               low_open=True))
        object.__setattr__(self, "window", check_int("window", self.window, 2))
        object.__setattr__(self, "every", check_int("every", self.every, 1))
        if self.skip_anomalous_above is not None:
            object.__setattr__(self, "skip_anomalous_above", check_number(
                "skip_anomalous_above", self.skip_anomalous_above, 0.0, low_open=True))
        object.__setattr__(self, "max_grad_norm", check_number("max_grad_norm", self.max_grad_norm, 0.0,
                                                               low_open=True))

    def settings(self) -> dict:
        """The constructor's keyword arguments (JSON-able)."""
        return asdict(self)

    @classmethod
    def coerce(cls, learn) -> "OnlineLearning | None":
        """``learn`` as given to :class:`StreamScorer`: None / False (off), True (defaults), an
        :class:`OnlineLearning`, or a dict of its keyword arguments."""
        if learn is None or learn is False:
            return None
        if learn is True:
            return cls()
        if isinstance(learn, cls):
            return learn
        if isinstance(learn, dict):
            unknown = sorted(set(learn) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(f"learn has unknown settings {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
            return cls(**learn)
        raise TypeError(f"learn must be None, a bool, an OnlineLearning or a dict of its settings; "
                        f"got {learn!r} ({type(learn).__name__})")


class OnlineLearner:
    """Per-stream weights, Adam moments and window buffers of a learning :class:`StreamScorer`.

    Parameters
    ----------
    model : GaussianForecaster
        The fitted forecaster; copied (every stream starts from its weights).
    settings : OnlineLearning
    n_channels : int

    Attributes
    ----------
    names : list of str
        The forecaster's trainable parameters, in ``named_parameters`` order.
    """

    def __init__(self, model, settings: OnlineLearning, n_channels: int) -> None:
        if getattr(model.layer, "router_keep", None) is not None:
            raise ValueError("online learning does not support a routed layer (router_keep); "
                             f"got router_keep={model.layer.router_keep}")
        self.settings = settings
        self.model = copy.deepcopy(model).eval()
        self.model.layer.backend = "reference"  # the backend vmap runs through (plain torch ops)
        self.model.requires_grad_(False)
        self.names = [name for name, _ in self.model.named_parameters()]
        self.initial = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        self.d, self.state_size = n_channels, self.model.layer.state_size
        self.slots = settings.window // settings.every + 1
        self.params = {name: p.new_zeros((0, *p.shape)) for name, p in self.initial.items()}
        self.adam_m = {name: p.new_zeros((0, *p.shape)) for name, p in self.initial.items()}
        self.adam_v = {name: p.new_zeros((0, *p.shape)) for name, p in self.initial.items()}
        self.adam_step = torch.zeros(0, dtype=torch.int64)
        self.ring_u = torch.zeros(0, settings.window, n_channels)
        self.ring_ok = torch.zeros(0, settings.window, dtype=torch.bool)
        self.checkpoint = torch.zeros(0, self.slots, self.state_size)
        self._forward_many = vmap(self._one_forward, in_dims=(0, 1, 0), out_dims=(1, 1, 0))
        self._loss_many = vmap(self._one_loss, in_dims=(0, 1, 0, 1))
        # core's per-sample path where it covers the layer (it records no trace: the layer's aux_loss is
        # exactly zero for every layer it covers); the vmap path otherwise
        self.fast = per_sample_unsupported(self.model.layer) is None and set(self.names) == {
            f"layer.{name}" for name, _ in self.model.layer.named_parameters()} | {"head.weight", "head.bias"}

    # ------------------------------------------------------------ per-stream arrays
    def arrays(self) -> dict[str, torch.Tensor]:
        """Every per-stream tensor by its save name (first axis = stream row)."""
        out = {}
        for prefix, group in (("weight", self.params), ("adam_m", self.adam_m), ("adam_v", self.adam_v)):
            out.update({f"learn.{prefix}.{name}": tensor for name, tensor in group.items()})
        out.update({"learn.adam_step": self.adam_step, "learn.ring_u": self.ring_u, "learn.ring_ok": self.ring_ok,
                    "learn.checkpoint": self.checkpoint})
        return out

    def set_arrays(self, arrays: dict) -> None:
        """Set the tensors :meth:`arrays` names from ``arrays`` (NumPy or torch, same shapes)."""
        for key in self.arrays():
            value = torch.as_tensor(np.array(arrays[key], copy=True))
            parts = key.split(".", 2)
            if parts[1] in ("weight", "adam_m", "adam_v"):
                {"weight": self.params, "adam_m": self.adam_m, "adam_v": self.adam_v}[parts[1]][parts[2]] = value
            else:
                setattr(self, parts[1], value)

    def grown(self, n: int) -> "OnlineLearner":
        """A copy with ``n`` more streams (fresh: the fitted weights, no moments, empty windows); shares
        nothing this learner's streams could change."""
        new = copy.copy(self)
        new.params = {k: torch.cat([v, self.initial[k].expand(n, *v.shape[1:])]) for k, v in self.params.items()}
        new.adam_m = {k: torch.cat([v, v.new_zeros((n, *v.shape[1:]))]) for k, v in self.adam_m.items()}
        new.adam_v = {k: torch.cat([v, v.new_zeros((n, *v.shape[1:]))]) for k, v in self.adam_v.items()}
        new.adam_step = torch.cat([self.adam_step, torch.zeros(n, dtype=torch.int64)])
        new.ring_u = torch.cat([self.ring_u, self.ring_u.new_zeros((n, *self.ring_u.shape[1:]))])
        new.ring_ok = torch.cat([self.ring_ok, self.ring_ok.new_zeros((n, *self.ring_ok.shape[1:]))])
        new.checkpoint = torch.cat([self.checkpoint, self.checkpoint.new_zeros((n, *self.checkpoint.shape[1:]))])
        return new

    # ------------------------------------------------------------ one stream (vmapped)
    def _one_forward(self, params: dict, u: torch.Tensor, state: torch.Tensor):
        """One stream: ``u (T, d)`` from ``state (S,)`` with ``params`` → mean, var ``(T, d)``, state."""
        mean, var, state = functional_call(self.model, params, (u[:, None], state[None]))
        return mean[:, 0], var[:, 0], state[0]

    def _one_loss(self, params: dict, u: torch.Tensor, state: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        """Masked Gaussian NLL of ``u[1:]`` under the forecasts of ``u[:-1]`` (``ok (T-1,)``), plus aux loss."""
        mean, var, _ = functional_call(self.model, params, (u[:, None], state[None]))
        mean, var = mean[:-1, 0], var[:-1, 0]
        nll = 0.5 * (torch.log(var) + (u[1:] - mean).square() / var).mean(-1)
        weights = ok.to(nll.dtype)
        return (nll * weights).sum() / weights.sum().clamp(min=1.0) + self.model.layer.aux_loss()

    def _fast_forward(self, params: dict, u: torch.Tensor, state: torch.Tensor):
        """:meth:`_forward` through core's per-sample path (:func:`~sparsernn.core.per_sample.per_sample_forward`)
        and the forecaster's ``predict_per_stream``."""
        layer = {name[len("layer."):]: value for name, value in params.items() if name.startswith("layer.")}
        y, state = per_sample_forward(self.model.layer, layer, u, state)
        mean, var = self.model.predict_per_stream(y, u, params)
        return mean, var, state

    def _fast_losses(self, params: dict, u: torch.Tensor, state: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        """Every stream's :meth:`_one_loss` ``(B,)`` through :meth:`_fast_forward` (no aux loss: zero here)."""
        mean, var, _ = self._fast_forward(params, u, state)
        mean, var = mean[:-1], var[:-1]
        nll = 0.5 * (torch.log(var) + (u[1:] - mean).square() / var).mean(-1)  # (T - 1, B)
        weights = ok.to(nll.dtype)
        return (nll * weights).sum(0) / weights.sum(0).clamp(min=1.0)

    def _forward(self, params: dict, u: torch.Tensor, state: torch.Tensor):
        """Every stream of ``u (T, B, d)`` from ``state (B, S)`` with its own ``params`` (``(B, ...)`` each);
        one stream without ``vmap`` (its overhead is pure cost there)."""
        if self.fast:
            return self._fast_forward(params, u, state)
        if u.shape[1] == 1:
            mean, var, state = self._one_forward({k: v[0] for k, v in params.items()}, u[:, 0], state[0])
            return mean[:, None], var[:, None], state[None]
        return self._forward_many(params, u, state)

    def _gradients(self, params: dict, u: torch.Tensor, state: torch.Tensor, ok: torch.Tensor):
        """Per-stream gradients (``(B, ...)`` each) and losses ``(B,)`` of :meth:`_one_loss`: one backward
        through the vmapped forward of all streams (the sum's gradient with respect to a stream's weights is
        that stream's gradient; twice as fast here as ``vmap(grad(...))``)."""
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        with torch.enable_grad():
            if self.fast:
                losses = self._fast_losses(leaves, u, state, ok)
            elif u.shape[1] == 1:
                losses = self._one_loss({k: v[0] for k, v in leaves.items()}, u[:, 0], state[0], ok[:, 0])[None]
            else:
                losses = self._loss_many(leaves, u, state, ok)
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return dict(zip(leaves, grads)), losses.detach()

    # ------------------------------------------------------------ a block
    def advance(self, u: np.ndarray, rows: np.ndarray, state: np.ndarray, mean0: np.ndarray, var0: np.ndarray,
                count0: np.ndarray, warmup: int, half: np.float32, forecasts: bool = False):
        """Score, then learn, the block ``u (T, B, d)`` (float32, normalised) of the streams ``rows``.

        ``state (B, S)``, ``mean0`` / ``var0 (B, d)`` (the pending forecasts) and ``count0 (B,)``
        are the streams' scorer state before the block (not changed here). Returns the
        surprises ``(T, B)`` (float64; 0 for a stream's first ``warmup`` points), the final
        state, the forecast mean and variance of each stream's next point, and with ``forecasts``
        the forecasts each point was scored under (mean and variance, ``(T, B, d)`` each; else None).
        """
        s = self.settings
        T, B = u.shape[:2]
        everything = B == len(self.adam_step) and np.array_equal(rows, np.arange(B))
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        params = self.params if everything else {k: v[index] for k, v in self.params.items()}
        state_t = torch.from_numpy(np.ascontiguousarray(state, dtype=np.float32))
        prev_mean, prev_var = mean0.astype(np.float32), var0.astype(np.float32)
        scores = np.empty((T, B))
        used = (np.empty(u.shape, dtype=np.float32), np.empty(u.shape, dtype=np.float32)) if forecasts else None
        t = 0
        while t < T:
            count = count0 + t
            # rows to the next learning step or checkpoint of any stream (both fall where counts meet `every`)
            to_event = (-(count + 1)) % s.every
            to_checkpoint = (-(count + 1 + s.window)) % s.every
            span = int(min(T - t, 1 + min(to_event.min(), to_checkpoint.min())))
            block = torch.from_numpy(np.ascontiguousarray(u[t:t + span]))
            with torch.no_grad():
                mean, var, state_t = self._forward(params, block, state_t)
            mean, var = mean.numpy(), var.numpy()
            forecasts_mean = np.concatenate([prev_mean[None], mean[:-1]])
            forecasts_var = np.concatenate([prev_var[None], var[:-1]])
            part = surprise(u[t:t + span], forecasts_mean, forecasts_var, half).astype(np.float64)
            part[(count[None, :] + np.arange(span)[:, None]) < warmup] = 0.0
            scores[t:t + span] = part
            if used is not None:
                used[0][t:t + span], used[1][t:t + span] = forecasts_mean, forecasts_var
            prev_mean, prev_var = mean[-1], var[-1]
            # the window buffers: the span's points and whether each may be learned from
            where = torch.from_numpy((count[None, :] + np.arange(span)[:, None]) % s.window)  # (span, B)
            ok = np.ones_like(part, dtype=bool) if s.skip_anomalous_above is None \
                else part <= s.skip_anomalous_above
            self.ring_u[index[None, :], where] = block
            self.ring_ok[index[None, :], where] = torch.from_numpy(ok)
            end = count + span
            at = np.flatnonzero((end + s.window) % s.every == 0)
            if at.size:
                slot = torch.from_numpy((end[at] // s.every) % self.slots)
                self.checkpoint[index[at], slot] = state_t[at]
            due = np.flatnonzero((end % s.every == 0) & (end >= s.window))
            if due.size:
                self._learn(params, index, due, end[due])
            t += span
        if not everything:
            for name, value in params.items():
                self.params[name][index] = value
        return scores, state_t.numpy(), prev_mean, prev_var, used

    def _learn(self, params: dict, index: torch.Tensor, due: np.ndarray, end: np.ndarray) -> None:
        """One Adam step for the streams ``due`` (positions in the block; ``end`` their counts)."""
        s = self.settings
        rows = index[torch.from_numpy(due)]
        order = torch.from_numpy((end[:, None] - s.window + np.arange(s.window)[None, :]) % s.window)
        ok = self.ring_ok[rows[:, None], order][:, 1:]
        keep = ok.any(1)  # a window with no point to learn from takes no step
        if not bool(keep.any()):
            return
        due, rows, order, ok = due[keep.numpy()], rows[keep], order[keep], ok[keep]
        window_u = self.ring_u[rows[:, None], order].transpose(0, 1).contiguous()  # (window, n, d)
        slot = torch.from_numpy(((end[keep.numpy()] - s.window) // s.every) % self.slots)
        start = self.checkpoint[rows, slot]
        at = torch.from_numpy(due)
        # every stream of the learner, in order: work on its tensors in place (no gather, no scatter)
        full = len(rows) == len(self.adam_step) and bool(torch.equal(rows, torch.arange(len(rows))))
        sub = params if full else {k: v[at] for k, v in params.items()}
        grads, losses = self._gradients(sub, window_u, start, ok.transpose(0, 1))
        sq = sum(g.reshape(len(rows), -1).square().sum(1) for g in grads.values())
        norm = sq.sqrt()
        finite = torch.isfinite(norm) & torch.isfinite(losses)
        if not bool(finite.any()):
            return
        if not bool(finite.all()):  # a stream whose gradient is not finite keeps its weights
            rows, at, full = rows[finite], at[finite], False
            grads, norm = {k: g[finite] for k, g in grads.items()}, norm[finite]
        clip = (s.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        step = self.adam_step[rows] + 1
        self.adam_step[rows] = step
        (b1, b2), stepf = ADAM_BETAS, step.to(torch.float32)
        correction1, correction2 = 1 - b1 ** stepf, (1 - b2 ** stepf).sqrt()
        for name, g in grads.items():  # Adam, per stream (its own step count); the same numbers either way
            shape = (-1,) + (1,) * (g.dim() - 1)
            g = g * clip.view(shape)
            m = (self.adam_m[name] if full else self.adam_m[name][rows]).mul_(b1).add_(g, alpha=1 - b1)
            v = (self.adam_v[name] if full else self.adam_v[name][rows]).mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / correction2.view(shape)).add_(ADAM_EPS)
            change = (s.learning_rate / correction1).view(shape) * m / denom
            if full:
                params[name].sub_(change)  # params are this learner's tensors
            else:
                self.adam_m[name][rows], self.adam_v[name][rows] = m, v
                params[name][at] = params[name][at] - change  # with `everything`, this learner's; else advance writes back
