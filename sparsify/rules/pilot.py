"""PILoT: a time-dependent regularization strength α_t on ‖m‖² + ‖w‖² (Mask in the Mirror:
Implicit Sparsification, ICLR 2025).

With θ = m ⊙ w, weight decay on m, w moves the implicit bias of training from L2 towards L1
(a time-dependent Bregman potential), and the move lasts after the regularization stops. PILoT
grows α while the network is still learning and far from sparse, then lets it decay, so the
second half of training is nearly unregularized: sparse bias without Lasso shrinkage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from sparsify.errors import ConfigError, check_choice
from sparsify.masks import check_sparsity
from sparsify.renamed import warn_renamed
from sparsify.reparam import layer_masks, pointwise_factors
from sparsify.rules.base import Rule, Run
from sparsify.rules.weight_decay import WeightDecayController
from sparsify.schedules import make_schedule, pilot_update
from sparsify.sign_flips import inner_scale

DEFAULT_MONITOR = "train/acc"
FIXED_SCHEDULES = ("constant", "inverse", "inverse_square", "exponential")
MonitorMode = Literal["max", "min"]

log = logging.getLogger(__name__)


class PILoT(Rule):
    """The paper's penalty α_t (‖m‖² + ‖w‖²) on exactly the reparametrized m, w, updated once
    per epoch k = 1 … T (T: the run's number of epochs; the paper numbers the epochs from 1, so
    the epoch of index e is k = e + 1), after the epoch:

        α ← α·δ  if the train accuracy improved, ‖m ⊙ w‖₁ ≥ K and k < T/2,
        α ← α/δ  otherwise.

    The objective is f(m ⊙ w) + α_t (‖m‖² + ‖w‖²), with no ½ (Mask in the Mirror, ICLR 2025),
    so the penalty's gradient is 2 α_t m and 2 α_t w: the m, w group gets weight decay 2 α_t
    (SGD's ``weight_decay`` adds ``weight_decay · p`` to the gradient; AdamW decays by it,
    decoupled). α therefore means what it means in the paper and its grid {1e-4, 3e-4, 1e-3}
    applies as published; ``pilot/alpha`` logs α_t, not the weight decay.

    Args:
        alpha_init: α during the first epoch (the paper's grid: 1e-4, 3e-4, 1e-3).
        delta: the factor δ > 1 of each update.
        l1_threshold: K, the L1 norm below which α stops growing; with
            ``l1_threshold_relative`` a fraction of ‖m ⊙ w‖₁ when training starts, otherwise an
            absolute value.
        l1_threshold_relative: whether ``l1_threshold`` is relative to the initial ‖m ⊙ w‖₁.
        schedule: ``"adaptive"`` (the rule above) or a fixed schedule of the epoch k from the
            paper's synthetic study, α_k = alpha_init · f(k): ``constant``, ``inverse`` (1/k),
            ``inverse_square`` (1/k²), ``exponential`` (``rate``^k), or a callable f.
        rate: the base of the ``exponential`` schedule (0.95 in the paper).
        monitor: the logged train-accuracy metric, read from the metrics logged in the epoch
            when it ends; it must be reduced over processes (torchmetrics, or
            ``self.log(..., on_epoch=True, sync_dist=True)``). ``None`` (default): ``train/acc``
            if the module logs it, otherwise the epoch's mean training loss, taken from what
            ``training_step`` returns and averaged over processes (mode ``min``; said once in
            the log). A metric named here that is missing at the end of the first epoch is
            an error.
        mode: ``"max"`` (improved = higher, an accuracy) or ``"min"`` (a loss), for ``monitor``.
        sparsity: the target sparsity s of the run, for ``pilot/l1_outside_top``; ``None``
            (default): the ``sparsity`` of a ``PruneAtEnd`` callback in the trainer, if any.
        outside_top_tolerance: a rule tied to the target sparsity s, not the paper's: α may
            grow only while the fraction of ‖m ⊙ w‖₁ outside the top (1 − s) weights
            (``l1_outside_top``) is at least this tolerance, in place of ‖m ⊙ w‖₁ ≥ K (K is then
            unused); the accuracy and k < T/2 conditions stay. ``None`` (default): the paper's
            rule. Needs a target sparsity (``sparsity`` or a ``PruneAtEnd``).
        K: the old name of ``l1_threshold``: works, warns once.
        K_relative: the old name of ``l1_threshold_relative``: works, warns once.

    m, w are moved into a param group of their own when the optimizer is built if it mixes them
    with other parameters (``sparsify.param_groups``); the other parameters keep their weight
    decay. The decay 2 α_t is set before every step through ``WeightDecayController``, the one
    weight-decay controller (``sparsify.rules.weight_decay``). Logs ``pilot/alpha`` (the α of
    the epoch) and ``pilot/l1_norm``, and with a target sparsity s ``pilot/l1_outside_top``, the
    fraction of ‖m ⊙ w‖₁ outside the top (1 − s) of the weights by magnitude
    (``l1_outside_top``): the share of the L1 mass that magnitude pruning to s would remove,
    near 0 once training has made θ s-sparse; ``pilot/inner_scale``, the mean of m² − w² (β: the
    bias is L2-like while β ≫ |θ|, L1-like once β ≪ |θ|). The α of rank 0 is broadcast after
    every update, so DDP ranks never diverge. ``history`` holds the α of every epoch trained;
    α, the last accuracy and the reference norm are in ``state_dict``.
    """

    state_fields = ("alpha", "last", "reference_norm", "follows_loss")

    def __init__(
        self,
        alpha_init: float = 1e-3,
        delta: float = 1.2,
        l1_threshold: float = 0.5,
        l1_threshold_relative: bool = True,
        schedule: str | Callable[[float], float] = "adaptive",
        rate: float = 0.95,
        monitor: str | None = None,
        mode: MonitorMode = "max",
        sparsity: float | None = None,
        outside_top_tolerance: float | None = None,
        K: float | None = None,
        K_relative: bool | None = None,
    ):
        if K is not None:
            warn_renamed("PILoT(K=...)", "PILoT(l1_threshold=...)")
            l1_threshold = K
        if K_relative is not None:
            warn_renamed("PILoT(K_relative=...)", "PILoT(l1_threshold_relative=...)")
            l1_threshold_relative = K_relative
        if not alpha_init > 0:
            raise ConfigError(f"alpha_init={alpha_init!r} is invalid: must be > 0")
        if not delta > 1:
            raise ConfigError(f"delta={delta!r} is invalid: must be > 1")
        if not l1_threshold >= 0:
            raise ConfigError(f"l1_threshold={l1_threshold!r} is invalid: must be >= 0")
        if outside_top_tolerance is not None and not 0 <= outside_top_tolerance < 1:
            raise ConfigError(
                f"outside_top_tolerance={outside_top_tolerance!r} is invalid: must be in [0, 1), "
                "a fraction of ‖m ⊙ w‖₁, or null for the paper's rule"
            )
        check_choice("mode", mode, MonitorMode)
        if not (callable(schedule) or schedule in ("adaptive", *FIXED_SCHEDULES)):
            raise ConfigError(
                f"schedule={schedule!r} is invalid: choose adaptive, "
                f"{', '.join(FIXED_SCHEDULES)} or a callable of the epoch"
            )
        self.alpha_init, self.delta = alpha_init, delta
        self.l1_threshold, self.l1_threshold_relative = l1_threshold, l1_threshold_relative
        self.adaptive = schedule == "adaptive"
        self.schedule = None if self.adaptive else make_schedule(schedule, rate=rate)
        self.monitor, self.mode = monitor, mode
        self.sparsity = None if sparsity is None else check_sparsity(sparsity)
        self.target_sparsity = self.sparsity  # an adapter may take it from a pruner
        self.outside_top_tolerance = outside_top_tolerance
        self.alpha = float(alpha_init)
        self.last: float | None = None
        self.reference_norm: float | None = None
        self.follows_loss = False  # no train accuracy logged: the rule follows the mean loss
        self.history: list[float] = []
        self.decay = WeightDecayController(pointwise=True)
        self._loss_sum, self._loss_count = 0.0, 0

    missing_factors = (
        "PILoT found no reparametrized m, w in the optimizer: add the Reparametrize callback "
        "(before PILoT)"
    )

    def attach(self, run: Run) -> None:
        if self.adaptive and run.progress.total_epochs is None:
            raise ConfigError(
                "PILoT(schedule='adaptive') is invalid in a run without a number of epochs: "
                "the rule needs the number of epochs T"
            )
        self.decay.attach(run, "PILoT", self.missing_factors)
        if self.outside_top_tolerance is not None and self.target_sparsity is None:
            raise ConfigError(
                f"outside_top_tolerance={self.outside_top_tolerance!r} needs a target sparsity: "
                "set PILoT's sparsity or add a PruneAtEnd callback"
            )

    def start(self, run: Run) -> None:
        if self.reference_norm is None:
            self.reference_norm = pointwise_l1_norm(run.model)

    @property
    def threshold(self) -> float:
        """K (``l1_threshold``) as an absolute L1 norm."""
        if self.l1_threshold_relative:
            return self.l1_threshold * self.reference_norm
        return self.l1_threshold

    def epoch_start(self, run: Run) -> dict[str, float]:
        if not self.adaptive:
            self.alpha = self.alpha_init * float(self.schedule(run.progress.epoch))
        self.history.append(self.alpha)
        return {"pilot/alpha": self.alpha}

    def before_step(self, run: Run) -> None:
        self.decay.set_value(run, 2 * self.alpha)  # ∇ α‖p‖² = 2αp

    def after_step(self, run: Run) -> None:
        if isinstance(run.loss, torch.Tensor):
            self._loss_sum += float(run.loss.detach())
            self._loss_count += 1

    def epoch_end(self, run: Run) -> dict[str, float]:
        magnitudes = pointwise_magnitudes(run.model)
        norm = float(magnitudes.sum())
        logged = {"pilot/l1_norm": norm, "pilot/inner_scale": inner_scale(run.model)}
        outside = None
        if self.target_sparsity is not None:
            outside = l1_outside_top(magnitudes, self.target_sparsity)
            logged["pilot/l1_outside_top"] = outside
        if self.adaptive:
            metric = self.read_metric(run)
            epoch, total = run.progress.epoch, run.progress.total_epochs
            self.update(metric, norm, epoch, total, outside)
            # Every rank computes the same values from reduced metrics and identical
            # parameters; rank 0's are broadcast so that a metric the user forgot to reduce
            # cannot split them.
            self.alpha, self.last = run.broadcast((self.alpha, self.last))
        return logged

    def update(
        self,
        metric: float,
        l1_norm: float,
        epoch: int,
        total_epochs: int,
        outside_top: float | None = None,
    ) -> float:
        """Apply the adaptive rule after epoch ``epoch`` (0-based: the paper's k = epoch + 1)
        of ``total_epochs`` given its train accuracy, ‖m ⊙ w‖₁ and (for
        ``outside_top_tolerance``) the fraction of it outside the top (1 − s) weights; the first
        epoch counts as an improvement. Returns α."""
        mode = "min" if self.follows_loss else self.mode
        if self.last is None:
            improved = True
        else:
            improved = metric > self.last if mode == "max" else metric < self.last
        # α may grow while the measure of "not sparse yet" reaches its limit: the paper's
        # ‖m ⊙ w‖₁ ≥ K, or the L1 share outside the top (1 − s) ≥ the tolerance.
        if self.outside_top_tolerance is None:
            measure, limit = l1_norm, self.threshold
        else:
            measure, limit = outside_top, self.outside_top_tolerance
        self.alpha = pilot_update(
            self.alpha, self.delta, improved, measure, limit, epoch + 1, total_epochs
        )
        self.last = metric
        return self.alpha

    def read_metric(self, run: Run) -> float:
        """The monitored metric of the epoch that ends, or its mean training loss (see
        ``monitor``); resets the loss average."""
        loss = run.mean(self._loss_sum / max(self._loss_count, 1))
        self._loss_sum, self._loss_count = 0.0, 0
        value = run.metrics.get(self.monitor or DEFAULT_MONITOR)
        if value is not None and not self.follows_loss:
            return float(value)
        if self.monitor is not None:
            raise ConfigError(self.missing_metric(run))
        if not self.follows_loss:
            self.inform(
                f"PILoT: {DEFAULT_MONITOR!r} is not logged; the adaptive rule follows the "
                "epoch's mean training loss (lower is better)"
            )
            self.follows_loss = True
        return float(loss)

    def missing_metric(self, run: Run) -> str:
        """The error when ``monitor`` is not among the epoch's metrics."""
        logged = ", ".join(sorted(run.metrics)) or "none"
        return (
            f"monitor={self.monitor!r} is invalid: no such metric at the end of the training "
            f"epoch (logged: {logged}); log it with on_epoch=True, or leave monitor unset "
            "to follow the mean training loss"
        )

    def inform(self, message: str) -> None:
        """Say ``message`` once in the log (an adapter says it on the first process only)."""
        log.info(message)


@torch.no_grad()
def pointwise_magnitudes(module: nn.Module) -> torch.Tensor:
    """|m ⊙ w ⊙ mask| of all reparametrized weights of ``module``, flattened into one tensor."""
    live = layer_masks(module)
    parts = [
        (m * w * live[name[: -len("weight")].rstrip(".")]).abs().flatten()
        for name, m, w in pointwise_factors(module)
    ]
    return torch.cat(parts) if parts else torch.zeros(0)


def pointwise_l1_norm(module: nn.Module) -> float:
    """‖m ⊙ w ⊙ mask‖₁ over all reparametrized weights of ``module``."""
    return float(pointwise_magnitudes(module).sum())


def l1_outside_top(magnitudes: torch.Tensor, sparsity: float) -> float:
    """The fraction of ‖θ‖₁ outside the top k = round((1 − s) · n) of the n entries |θ|:

        1 − Σ_{i ≤ k} |θ|₍ᵢ₎ / Σᵢ |θ|ᵢ        (|θ|₍₁₎ ≥ |θ|₍₂₎ ≥ … sorted),

    i.e. the share of the L1 mass a global magnitude pruning to sparsity s would remove
    (0: θ is already s-sparse; 0 for θ = 0)."""
    total = float(magnitudes.sum())
    if total == 0:
        return 0.0
    keep = round((1 - sparsity) * magnitudes.numel())
    top = float(torch.topk(magnitudes, keep, sorted=False).values.sum()) if keep else 0.0
    return max(0.0, 1 - top / total)
