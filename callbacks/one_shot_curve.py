"""The PILoT paper's evaluation protocol: one trained model, pruned by magnitude without
fine-tuning at sparsities 1 − 0.8^k (k = 1…25), accuracy measured at each (Mask in the Mirror,
ICLR 2025; docs/methods.md, "PILoT"). The model is the one the method trained, before any pruning or
fine-tuning of the recipe (``PruneAtEnd``)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from sparsify.callbacks.prune_at_end import PruneAtEnd
from sparsify.errors import ConfigError, check_choice
from sparsify.masks import (
    LAYER_FLOOR,
    Scope,
    check_layer_floor,
    check_scope,
    magnitude_prune,
    sparsity_report,
)
from sparsify.soft_masks import hardened_copy

Stage = Literal["test", "fit"]
COLUMNS = ("k", "sparsity", "achieved_sparsity", "accuracy")


def curve_sparsities(steps: int = 25, rate: float = 0.8) -> list[float]:
    """[1 − rate^k for k = 1…steps]: each step removes 1 − rate of the weights still kept."""
    return [1 - rate**k for k in range(1, steps + 1)]


class OneShotPruningCurve(L.Callback):
    """Accuracy versus sparsity of the trained model pruned by magnitude without fine-tuning.

    At the end of ``sparsify test`` / ``trainer.test`` (``stage="test"``, on the test data) or of
    fitting (``stage="fit"``, on the validation data), a deep copy of the module is pruned by
    |θ| (``scope`` ``"global"`` or ``"layer"``, ``sparsify.masks.magnitude_prune``) to each
    sparsity 1 − ``rate``^k, k = 1…``steps``, and its top-1 accuracy measured; the model the
    trainer holds is not changed. Batches are ``(input, target, ...)`` and the prediction is
    the argmax of ``module(input)``.

    Which weights: with ``before_pruning`` (default, the paper's protocol) the model as the
    method trained it. Where a ``PruneAtEnd`` callback of the trainer has pruned in this run,
    that is its ``unpruned_state_dict``: the weights just before it pruned (and before its
    fine-tuning epochs), soft masks (STR, CS) already hardened; without a ``PruneAtEnd`` (dense,
    HAM) the model as it is. A ``PruneAtEnd`` that has not pruned in this run, as in ``sparsify
    test`` of a checkpoint (which holds only the pruned model), is a ``ConfigError`` when the
    test starts: the curve goes in the ``sparsify fit`` that trains the model. With
    ``before_pruning=False`` the curve is of the model as it is, pruned or not. Either way soft
    masks are hardened first (``sparsify.soft_masks.harden``: STR's θ unchanged, CS's mask
    binarized to s > 0), and weights that are already exactly 0 stay pruned, so below the
    model's own sparsity the achieved sparsity (``achieved_sparsity``) is higher than 1 − rate^k.

    Writes ``one_shot_curve.csv`` (columns ``k, sparsity, achieved_sparsity, accuracy``) and
    ``one_shot_curve.png`` to ``dirpath`` (default: the trainer's log folder), logs them to W&B
    as a table and an image when a ``WandbLogger`` is present, and keeps the rows in
    ``self.rows``. Rank 0 evaluates on its own data loader.

    Args:
        steps: the number of sparsities, k = 1 … steps (the paper: 25).
        rate: the sparsities are 1 − rate^k (the paper: 0.8).
        scope: ``"global"`` (one magnitude threshold) or ``"layer"`` (every layer alike).
        stage: ``"test"`` (after testing, on the test data) or ``"fit"`` (after fitting, on the
            validation data).
        dirpath: the folder of the CSV and the plot; ``None``: the trainer's log folder.
        before_pruning: curve the model as the method trained it, before ``PruneAtEnd``
            pruned (default); ``False``: the model as it is.
        layer_floor: under the global threshold every layer keeps at least
            ``layer_floor · (1 − sparsity)`` of its weights (the same default, 0.2, in every
            global pruner; ``sparsify.masks.LAYER_FLOOR``); 0: the plain global threshold.
    """

    def __init__(
        self,
        steps: int = 25,
        rate: float = 0.8,
        scope: Scope = "global",
        stage: Stage = "test",
        dirpath: str | None = None,
        before_pruning: bool = True,
        layer_floor: float = LAYER_FLOOR,
    ):
        if not (isinstance(steps, int) and steps >= 1):
            raise ConfigError(f"steps={steps!r} is invalid: an integer >= 1")
        if not 0 < rate < 1:
            raise ConfigError(f"rate={rate!r} is invalid: must be in (0, 1)")
        check_choice("stage", stage, Stage)
        self.steps, self.rate, self.scope = steps, float(rate), check_scope(scope)
        self.stage, self.dirpath = stage, dirpath
        self.before_pruning = bool(before_pruning)
        self.layer_floor = check_layer_floor(layer_floor)
        self.rows: list[dict] = []
        self._curved = None  # the unpruned weights last curved: `sparsify fit` tests twice

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test" and self.stage == "test":
            self.trained_weights(trainer)  # fail before the test, not after it

    def trained_weights(self, trainer: L.Trainer) -> dict | None:
        """The state dict to curve: the weights from before ``PruneAtEnd`` pruned, ``None`` for
        the model as it is."""
        if not self.before_pruning:
            return None
        pruner = next((c for c in trainer.callbacks if isinstance(c, PruneAtEnd)), None)
        if pruner is None:
            return None
        if pruner.unpruned_state_dict is None:
            raise ConfigError(
                f"OneShotPruningCurve(before_pruning=True) needs the weights from before "
                f"PruneAtEnd(sparsity={pruner.sparsity:g}) pruned, and this run has none (a "
                "checkpoint holds only the pruned model): add the curve to the `sparsify fit` "
                "that trains the model (--config eval/one_shot_curve), or set "
                "before_pruning=false to curve the model as it is"
            )
        return pruner.unpruned_state_dict

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "test":
            self.run(trainer, pl_module, trainer.test_dataloaders)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "fit":
            self.run(trainer, pl_module, trainer.val_dataloaders)

    @rank_zero_only
    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, loaders) -> None:
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        if loaders is None:
            raise ConfigError(f"OneShotPruningCurve(stage={self.stage!r}) found no data to score")
        weights = self.trained_weights(trainer)
        if weights is not None and weights is self._curved:
            return  # the same weights, curved at the previous test of this run
        self.rows = self.curve(pl_module, loaders, weights)
        self._curved = weights
        out = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        csv_path, png_path = write_curve(self.rows, out)
        rank_zero_info(f"OneShotPruningCurve: {len(self.rows)} sparsities, written to {csv_path}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                columns = list(COLUMNS)
                data = [[row[c] for c in columns] for row in self.rows]
                logger.log_table("one_shot_curve/table", columns=columns, data=data)
                logger.log_image("one_shot_curve/plot", images=[str(png_path)])

    def curve(self, pl_module: torch.nn.Module, loader, weights: dict | None = None) -> list[dict]:
        """[{k, sparsity, achieved_sparsity, accuracy}] of a pruned copy of ``pl_module`` (left
        unchanged), loaded with the state dict ``weights`` when given."""
        pruned = hardened_copy(pl_module)
        if weights is not None:
            pruned.load_state_dict(weights)  # PruneAtEnd's: hardened before it was taken
        rows = []
        for k, sparsity in enumerate(curve_sparsities(self.steps, self.rate), start=1):
            magnitude_prune(pruned, sparsity, self.scope, layer_floor=self.layer_floor)
            achieved = sparsity_report(pruned)["global"]
            acc = accuracy(pruned, loader)
            rows.append(
                {"k": k, "sparsity": sparsity, "achieved_sparsity": achieved, "accuracy": acc}
            )
        return rows


@torch.no_grad()
def accuracy(module: torch.nn.Module, loader) -> float:
    """Top-1 accuracy of ``module`` (eval mode, restored after) on ``(input, target)`` batches."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    right = total = 0
    for batch in loader:
        x, y = move_data_to_device(batch[:2], device)
        right += int((module(x).argmax(-1) == y).sum())
        total += y.numel()
    module.train(was_training)
    return right / total if total else float("nan")


def write_curve(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """``one_shot_curve.csv`` and ``one_shot_curve.png`` (accuracy vs sparsity) in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "one_shot_curve.csv", out / "one_shot_curve.png"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["sparsity"] for r in rows], [r["accuracy"] for r in rows], marker="o")
    ax.set_xlabel("sparsity (one-shot magnitude pruning, no fine-tuning)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return csv_path, png_path
