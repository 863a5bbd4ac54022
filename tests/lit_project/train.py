"""The project's train script: a Hydra-style config (``_target_`` entries) of the trainer's
callbacks, ModelCheckpoint on val/acc, then a test of the best checkpoint, as the
lightning-hydra-template does. The checkpoints hold the network object in their
hyper-parameters (``save_hyperparameters`` of an ``nn.Module``), so they load with
``weights_only=False``, as for any project written this way.
Usage: ``python train.py CALLBACKS_YAML OUT_DIR [EPOCHS]``."""

import importlib
import json
import sys

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf
from project import MLP, Digits, LitClassifier


def instantiate(config: dict):
    """Hydra's ``instantiate`` for one flat ``_target_`` entry (hydra itself is not needed)."""
    config = dict(config)
    module_name, _, name = config.pop("_target_").rpartition(".")
    return getattr(importlib.import_module(module_name), name)(**config)


def train(callbacks_yaml: str, out_dir: str, epochs: int = 8, **trainer_kwargs) -> dict:
    L.seed_everything(0, workers=True)
    group = OmegaConf.to_container(OmegaConf.load(callbacks_yaml), resolve=True)
    checkpoint = ModelCheckpoint(dirpath=f"{out_dir}/checkpoints", monitor="val/acc", mode="max")
    callbacks = [checkpoint, *(instantiate(c) for c in (group or {}).values())]
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        default_root_dir=out_dir,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        **trainer_kwargs,
    )
    model = LitClassifier(net=MLP())
    data = Digits()
    trainer.fit(model, datamodule=data)
    best = trainer.checkpoint_callback.best_model_path
    (metrics,) = trainer.test(
        model, datamodule=data, ckpt_path=best, verbose=False, weights_only=False
    )
    result = {"best_model_path": best, "test/acc": metrics["test/acc"]}
    with open(f"{out_dir}/train_result.json", "w") as f:
        json.dump(result, f)
    return result


if __name__ == "__main__":
    print(train(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:])))
