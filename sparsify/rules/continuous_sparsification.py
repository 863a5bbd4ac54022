"""Continuous sparsification (CS): a sigmoid soft mask with a growing temperature, in rounds.

Savarese, Silva & Maire, "Winning the Lottery with Continuous Sparsification" (NeurIPS 2020),
as the authors' code runs it (lolemacs/continuous-sparsification, ``main.py`` and
``models/layers.py``): every weight is used as θ = w ⊙ σ(τ s) / σ(s₀) with a learned score s
per weight, and the loss gets the penalty λ Σ σ(τ s) / σ(s₀) on the scaled soft mask, whose
gradient in s is λ τ σ'(τ s) / σ(s₀). The search runs in rounds: in each, τ grows
geometrically from τ₀ = 1 at the round's first epoch to τ_final at its last; between rounds τ
returns to τ₀ and the scores are clamped to s ← min(s, s₀). The weights (with every other
parameter and buffer of the model but the scores) are saved at an early epoch of the first
round; after the last round the mask is binarized to 1[s > 0] and the saved weights are
trained under it (the ticket), θ = w ⊙ 1[s > 0] / σ(s₀) with the factor outside the trained w,
with fresh optimizer state. Every round and the ticket run the whole learning-rate schedule
(the reference calls its schedule with the epoch of the round). The scores have no weight
decay.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.param_groups import isolate
from sparsify.rules.base import LayerRule, Run
from sparsify.soft_masks import SigmoidMask, harden, sigmoid_mask, soft_masks
from sparsify.state import parametrization_keys

SCORES_GROUP = "cs_scores"


class ContinuousSparsification(LayerRule):
    """Install CS's ``SigmoidMask`` on every selected weight in ``prepare`` (before the
    optimizers are built, so they see the scores s), run the search rounds and the ticket phase,
    and ``harden`` the mask to 1[s > 0].

    Args:
        penalty: λ. Before every optimizer step the penalty's gradient λ τ σ'(τ s) / σ(τ₀ s₀)
            is added to the scores' gradient (the reference adds λ Σ σ(τ s) / σ(s₀) to the loss).
        s_init: s₀, the initial score of every weight (the reference's ``mask_initial_value``;
            at or below 0 a weight survives only if the loss pushes its score above 0).
        temperature_init: τ₀, the temperature at the first epoch of each round.
        temperature_final: τ at the last epoch of each round; in between
            τ = τ₀ · (τ_final / τ₀)^(e / (E − 1)) at epoch e of a round of E epochs.
        rounds: search rounds sharing the search epochs (as equal as whole epochs allow).
            Between rounds τ returns to τ₀ and s ← min(s, s₀).
        ticket: the fraction of ``max_epochs`` at the end spent training the ticket: the mask
            is binarized, the weights go back to their values at ``rewind`` and train under it
            with cleared optimizer state (momentum) and the learning-rate schedule started
            again. 0: no ticket phase; the mask is binarized when training ends and the
            weights are the searched ones.
        rewind: the epoch of the first round, as a fraction of ``max_epochs`` (rounded), at
            whose start the weights are saved for the ticket.
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        harden_at_end: binarize the mask when training ends (without a ticket phase), and
            multiply the ticket's 1/σ(s₀) into plain weights at the end.
        restart_schedule: every round and the ticket replay the module's whole learning-rate
            schedule over their own epochs, as the reference restarts its schedule for each
            (``True``, default). ``False``: the module's schedule runs once over the whole
            training, so the ticket continues where the search left it (near the end of a
            cosine).
        fold_scale: multiply 1/σ(s₀) into the weights when the ticket starts (θ = w' ⊙
            1[s > 0] with w' = w / σ(s₀) trained), instead of keeping it outside w as the
            reference does (``False``, default). θ is the same; the gradient steps on θ are
            σ(s₀)² times the reference's (1/4 at s₀ = 0).

    The scores get a param group of their own, ``cs_scores``, with weight decay 0, in
    ``attach`` (the reference has a separate optimizer for them without weight decay);
    they share the learning rate, momentum and learning-rate schedule of the group they came
    from; in the ticket they get zero gradients and stay as they are (the reference's ticket
    optimizer has only the weights). The learning-rate restarts work with any scheduler of the
    module: at a round's or the ticket's first epoch every scheduler goes back to its state at
    the start of training (and the learning rates to theirs), and then takes
    ``max_epochs / E`` of its steps for each of the phase's (rounded down, as a running
    count), so a phase of E epochs ends where the schedule ends; the optimizer state carries
    over between rounds, as in the reference, and is cleared for the ticket.

    The scores, τ, the saved weights and the schedulers' starting state are in the model's and
    the callback's ``state_dict``: a resumed run continues the rounds. Logs ``cs/temperature``,
    ``cs/round`` and ``cs/density`` (the fraction of scores > 0, the density binarizing would
    give) every epoch.
    """

    state_fields = ("clamped", "saved", "ticket_started", "initial_schedule", "phase_start_step")

    def __init__(
        self,
        penalty: float = 1e-8,
        s_init: float = 0.0,
        temperature_init: float = 1.0,
        temperature_final: float = 200.0,
        rounds: int = 1,
        ticket: float = 0.0,
        rewind: float = 0.0,
        include: list | None = None,
        exclude: list | None = None,
        harden_at_end: bool = True,
        restart_schedule: bool = True,
        fold_scale: bool = False,
    ):
        if penalty < 0:
            raise ConfigError(f"penalty={penalty!r} is invalid: must be >= 0")
        if not 0 < temperature_init <= temperature_final:
            raise ConfigError(
                f"temperature_init={temperature_init!r}, temperature_final={temperature_final!r}"
                " is invalid: need 0 < temperature_init <= temperature_final"
            )
        if not (isinstance(rounds, int) and rounds >= 1):
            raise ConfigError(f"rounds={rounds!r} is invalid: must be an integer >= 1")
        if not 0 <= ticket < 1:
            raise ConfigError(f"ticket={ticket!r} is invalid: a fraction of training in [0, 1)")
        if not 0 <= rewind < 1:
            raise ConfigError(f"rewind={rewind!r} is invalid: a fraction of training in [0, 1)")
        self.penalty = float(penalty)
        self.s_init = float(s_init)
        self.temperature_init = float(temperature_init)
        self.temperature_final = float(temperature_final)
        self.rounds, self.ticket, self.rewind = rounds, float(ticket), float(rewind)
        self.include, self.exclude = include, exclude
        self.harden_at_end = harden_at_end
        self.restart_schedule, self.fold_scale = bool(restart_schedule), bool(fold_scale)
        self.clamped = 0  # rounds whose clamp s ← min(s, s₀) has been done
        self.saved: dict[str, torch.Tensor] | None = None
        self.ticket_started = False
        # Each scheduler's state_dict and its optimizer's learning rates at the start of
        # training, and the global step at which the current round or ticket started.
        self.initial_schedule: list[tuple[dict, list]] | None = None
        self.phase_start_step = 0

    # The schedule: epochs of the rounds and of the ticket.

    def schedule(self, max_epochs: int) -> tuple[list[int], int, int]:
        """(first epoch of each round, first epoch of the ticket, rewind epoch)."""
        ticket_start = max_epochs - round(self.ticket * max_epochs) if self.ticket else max_epochs
        starts = [round(r * ticket_start / self.rounds) for r in range(self.rounds)]
        return starts, ticket_start, round(self.rewind * max_epochs)

    def check_epochs(self, max_epochs: int | None, name: str = "max_epochs") -> None:
        """Refuse a run whose ``max_epochs`` (called ``name`` by the framework) cannot hold the
        rounds, the ticket and the rewind epoch."""
        if max_epochs is None or max_epochs < 1:
            raise ConfigError(
                f"{name}={max_epochs} is invalid for ContinuousSparsification: the "
                "temperature schedule needs a fixed number of epochs"
            )
        starts, ticket_start, rewind = self.schedule(max_epochs)
        if self.ticket and ticket_start >= max_epochs:
            raise ConfigError(
                f"ticket={self.ticket} is invalid with {name}={max_epochs}: it rounds to no "
                "epoch; give a larger fraction or 0 (no ticket phase)"
            )
        if len(set(starts + [ticket_start])) < self.rounds + 1:
            raise ConfigError(
                f"rounds={self.rounds}, ticket={self.ticket} is invalid with {name}="
                f"{max_epochs}: every round and the ticket need at least one epoch"
            )
        first_round_end = starts[1] if self.rounds > 1 else ticket_start
        if self.ticket and rewind >= first_round_end:
            raise ConfigError(
                f"rewind={self.rewind} is invalid with {name}={max_epochs}: epoch {rewind} "
                f"is not in the first round (epochs 0 to {first_round_end - 1})"
            )

    def position(self, epoch: int, max_epochs: int) -> tuple[int, int, int]:
        """(round, epoch within the round, epochs in the round) of a search epoch."""
        starts, ticket_start, _ = self.schedule(max_epochs)
        index = max(r for r, start in enumerate(starts) if start <= epoch)
        end = starts[index + 1] if index + 1 < len(starts) else ticket_start
        return index, epoch - starts[index], end - starts[index]

    def phase(self, epoch: int, max_epochs: int) -> tuple[int, int]:
        """(first epoch, epochs) of the round or ticket that ``epoch`` belongs to."""
        starts, ticket_start, _ = self.schedule(max_epochs)
        bounds = [*starts, ticket_start] + ([max_epochs] if self.ticket else [])
        index = max(i for i, start in enumerate(bounds[:-1]) if start <= epoch)
        return bounds[index], bounds[index + 1] - bounds[index]

    def temperature(self, epoch: int, max_epochs: int) -> float:
        """τ₀ · (τ_final / τ₀)^(e / (E − 1)) at epoch e of its round of E epochs."""
        _, within, length = self.position(epoch, max_epochs)
        progress = min(1.0, within / max(1, length - 1))
        return self.temperature_init * (self.temperature_final / self.temperature_init) ** progress

    # The events.

    def prepare(self, model: nn.Module) -> None:
        sigmoid_mask(model, self.s_init, self.temperature_init, self.layers(model))

    def attach(self, run: Run) -> None:
        scores = [soft.scores for _, soft in soft_masks(run.model, SigmoidMask)]
        for group in isolate(run.optimizers, run.schedulers, scores, SCORES_GROUP):
            group["weight_decay"] = 0.0

    def start(self, run: Run) -> None:
        # After attach (the scores' group exists) and after a resumed run has restored the
        # rule's state, which then already holds the schedule's start.
        if self.restart_schedule and self.initial_schedule is None:
            self.initial_schedule = [
                (copy.deepcopy(scheduler.state_dict()), learning_rates(scheduler))
                for scheduler in run.schedulers
            ]

    def epoch_start(self, run: Run) -> None:
        epoch, max_epochs = run.progress.epoch, run.progress.total_epochs
        _, ticket_start, rewind = self.schedule(max_epochs)
        if self.ticket and epoch >= ticket_start:
            if not self.ticket_started:
                self.start_ticket(run)
                self.restart(run)
            return
        if self.ticket and epoch == rewind and self.saved is None:
            self.saved = rewind_state(run.model)
        index, _, _ = self.position(epoch, max_epochs)
        masks = [soft for _, soft in soft_masks(run.model, SigmoidMask)]
        if index > self.clamped:
            with torch.no_grad():
                for soft in masks:
                    soft.scores.clamp_(max=self.s_init)
            self.clamped = index
            self.restart(run)
        tau = self.temperature(epoch, max_epochs)
        for soft in masks:
            soft.temperature.fill_(tau)

    def start_ticket(self, run: Run) -> None:
        """Rewind the weights, binarize the mask (or fold it into the weights:
        ``fold_scale``, after which the model has no scores), clear the optimizer state."""
        if self.saved is None:
            raise RuntimeError("ContinuousSparsification: no weights were saved to rewind to")
        with torch.no_grad():
            state = run.model.state_dict(keep_vars=True)
            for key, value in self.saved.items():
                state[key].copy_(value.to(state[key].device))
        if self.fold_scale:
            harden(run.model)
        else:
            for _, soft in soft_masks(run.model, SigmoidMask):
                soft.binarize_()
        for optimizer in run.optimizers:
            optimizer.state.clear()
        self.ticket_started = True

    @torch.no_grad()
    def before_optimizer_step(self, run: Run) -> None:
        if not self.penalty or self.ticket_started:  # the ticket's mask is fixed
            return
        for _, soft in soft_masks(run.model, SigmoidMask):
            if soft.scores.grad is not None:
                sigma = soft.soft_mask()
                gradient = soft.temperature * sigma * (1 - sigma) * soft.scale
                soft.scores.grad.add_(gradient, alpha=self.penalty)

    def after_step(self, run: Run) -> None:
        if self.restart_schedule:
            self.catch_up(run, "step", run.progress.step - self.phase_start_step)

    def epoch_end(self, run: Run) -> dict[str, float] | None:
        epoch, max_epochs = run.progress.epoch, run.progress.total_epochs
        if self.restart_schedule:
            start, _ = self.phase(epoch, max_epochs)
            self.catch_up(run, "epoch", epoch + 1 - start)
        masks = [soft for _, soft in soft_masks(run.model, SigmoidMask)]
        if not masks:
            return None
        alive = sum(int(((s.scores > 0) * s.mask).sum()) for s in masks)
        total = sum(s.scores.numel() for s in masks)
        return {
            "cs/temperature": float(masks[0].temperature),
            "cs/round": float(self.position(epoch, max_epochs)[0]),
            "cs/density": alive / total,
        }

    def end(self, run: Run) -> None:
        if self.harden_at_end:
            harden(run.model)

    # The learning-rate schedule of each round and of the ticket.

    def restart(self, run: Run) -> None:
        """Put every scheduler and learning rate back where training started (a round's or the
        ticket's first epoch)."""
        self.phase_start_step = run.progress.step
        if not self.restart_schedule:
            return
        for scheduler, (state, rates) in zip(run.schedulers, self.initial_schedule):
            scheduler.load_state_dict(copy.deepcopy(state))
            for group, rate in zip(scheduler.optimizer.param_groups, rates):
                group["lr"] = rate

    def catch_up(self, run: Run, interval: str, elapsed: int) -> None:
        """Step the ``interval`` schedulers until each has taken ⌊elapsed · T / E⌋ steps (÷ its
        frequency) since the phase began: ``elapsed`` of the phase's E epochs (or their steps)
        went by, and the schedule is laid out for T = ``max_epochs``."""
        max_epochs = run.progress.total_epochs
        _, length = self.phase(run.progress.epoch, max_epochs)
        schedules = zip(run.schedulers, run.scheduler_steps, self.initial_schedule)
        for scheduler, when, (state, _) in schedules:
            if when is None or when[0] != interval:
                continue
            target = elapsed * max_epochs // length // when[1]
            for _ in range(target - (scheduler.last_epoch - state["last_epoch"])):
                scheduler.step()


def learning_rates(scheduler) -> list:
    """The learning rate of every param group of the optimizer ``scheduler`` drives."""
    return [group["lr"] for group in scheduler.optimizer.param_groups]


def rewind_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer of the model but CS's own (scores, τ, scale, mask):
    what the reference rewinds (its conv, linear and BatchNorm state) for the ticket."""
    own = {
        key
        for name, soft in soft_masks(model, SigmoidMask)
        for key in parametrization_keys(name, soft)
    }
    return {
        key: value.detach().cpu().clone()
        for key, value in model.state_dict().items()
        if key not in own
    }
