"""Keeping DDP in step with a model whose parameters change during training."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.strategies import DDPStrategy
from torch.nn.parallel import DistributedDataParallel


def rewrap_ddp(trainer: L.Trainer) -> None:
    """Wrap the LightningModule in a new ``DistributedDataParallel`` after parameters left it.

    DDP records the module's parameters when it wraps it and then waits, every step, for a
    gradient of each; a parameter removed mid-training (STR's thresholds and CS's scores when
    ``harden`` turns them into plain masks) never gets one, and the next step fails with
    "parameters that were not used in producing the loss". A new wrapper records the
    parameters the model has now. Every rank must call this at the same point of training (it
    broadcasts rank 0's parameters and buffers, already equal on every rank). Without DDP it does
    nothing.
    """
    strategy = trainer.strategy
    if isinstance(strategy, DDPStrategy) and isinstance(strategy.model, DistributedDataParallel):
        strategy.model = strategy.lightning_module
        strategy.configure_ddp()
