"""The project's eval script, run as its own process: build the plain module, load a
checkpoint, test it; it never imports sparsify. Usage: ``python eval.py CKPT OUT_JSON``."""

import json
import sys

import lightning as L
import torch
from project import MLP, Digits, LitClassifier


def evaluate(checkpoint: str) -> dict:
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    model = LitClassifier(net=MLP())  # freshly built, as the template's eval.py does
    (metrics,) = trainer.test(
        model, datamodule=Digits(), ckpt_path=checkpoint, verbose=False, weights_only=False
    )
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    reloaded = LitClassifier.load_from_checkpoint(
        checkpoint, map_location="cpu", weights_only=False
    )
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), reloaded.state_dict().values())
    )
    return {
        "test/acc": metrics["test/acc"],
        "sparsity": zeros / total,
        "load_from_checkpoint_equal": same,
        "sparsify_imported": any(m.split(".")[0] == "sparsify" for m in sys.modules),
    }


if __name__ == "__main__":
    with open(sys.argv[2], "w") as f:
        json.dump(evaluate(sys.argv[1]), f)
