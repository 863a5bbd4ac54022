"""The base of every callback that puts parametrizations (masks, m ⊙ w, soft masks) on the
module: its checkpoints are written in the portable form of ``sparsify.state``."""

from __future__ import annotations

import lightning as L

from sparsify.state import portable_state_dict


class PortableCheckpoint(L.Callback):
    """Write ``checkpoint["state_dict"]`` with plain weights θ under the plain keys, so that the
    module built without sparsify loads it; the m, w, masks and scores ride along in the state
    dict's metadata and a run resumed with the callbacks gets them back bit-exactly.

    Lightning calls ``on_save_checkpoint`` of callbacks only for full checkpoints:
    ``ModelCheckpoint(save_weights_only=True)`` writes the parametrized keys as they are.
    """

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint["state_dict"] = portable_state_dict(pl_module, checkpoint["state_dict"])
