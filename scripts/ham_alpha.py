"""HAM's α on digits: test accuracy of the digits recipe's training for a grid of α and warm-up
lengths, in plain PyTorch (the setting of ``sparsify fit --config method/ham``: cnn_digits, SGD
lr 0.05, momentum 0.9, weight decay 5e-4 on the weights, batch 32, cosine per step, seed 0).
Not a test: run it and paste the table into docs/performance.md.

    python scripts/ham_alpha.py [--alphas 0 5 10 20 50 200] [--warmup 0 1] [--epochs 30]
        [--pai 0.9 --distribution global]

α = 0 is the optimizer alone plus β's decay; ``--no-ham`` adds a row without the wrapper.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from sparsify.datamodules import DigitsDataModule
from sparsify.lightning.module import lr_scheduler
from sparsify.models import create_model
from sparsify.optim import HAM
from sparsify.pai import prune_at_init


def train(
    alpha: float | None,
    warmup_epochs: float,
    epochs: int,
    beta: float = 1e-3,
    pai: tuple[float, str] | None = None,
):
    """Test accuracy and the largest parameter norm after training; ``alpha=None``: no HAM;
    ``pai=(sparsity, distribution)``: a fixed random mask chosen before training."""
    torch.manual_seed(0)
    data = DigitsDataModule(batch_size=32)
    data.setup()
    model = create_model("cnn_digits", num_classes=10)
    if pai is not None:
        prune_at_init(model, pai[0], "random", distribution=pai[1])
    groups = [
        {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 5e-4},
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    sgd = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    steps = len(data.train_dataloader())
    scheduler = lr_scheduler(sgd, "cosine", epochs * steps, warmup_epochs * steps)
    opt = sgd if alpha is None else HAM(sgd, alpha=alpha, beta=beta)
    for _ in range(epochs):
        for x, y in data.train_dataloader():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            scheduler.step()
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x).argmax(1) == y).sum()) for x, y in data.test_dataloader())
    return right / len(data.test_set), max(float(p.norm()) for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0, 5, 10, 20, 50, 100, 200])
    parser.add_argument("--warmup", type=float, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--no-ham", action="store_true", help="add rows without the wrapper")
    parser.add_argument("--pai", type=float, default=None, help="random PaI mask at this sparsity")
    parser.add_argument("--distribution", default="global", help="layer densities of --pai")
    args = parser.parse_args()
    alphas = ([None] if args.no_ham else []) + args.alphas
    print("| α | warm-up (epochs) | test accuracy | largest parameter norm | seconds |")
    print("|---|---:|---:|---:|---:|")
    for warmup in args.warmup:
        for alpha in alphas:
            start = time.perf_counter()
            pai = None if args.pai is None else (args.pai, args.distribution)
            accuracy, norm = train(alpha, warmup, args.epochs, pai=pai)
            name = "no HAM" if alpha is None else f"{alpha:g}"
            seconds = time.perf_counter() - start
            print(
                f"| {name} | {warmup:g} | {accuracy:.4f} | {norm:.1f} | {seconds:.0f} |", flush=True
            )


if __name__ == "__main__":
    main()
