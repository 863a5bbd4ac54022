"""The "signs are sufficient" experiment of Sign-In to the Lottery (NeurIPS 2025).

docs/pai.md, "Sign transfer", has the method and the measured table.

1. Train a dense network (``method/dense``, seed 0) and keep its final checkpoint θ_src.
2. Train four sparse networks (seed 1) with the mask of θ_src's largest |θ| at ``--sparsity``
   (``SignTransfer``), each starting from
   - ``signs``: sign(θ_src) with this run's random magnitudes,
   - ``magnitudes``: |θ_src| with this run's random signs,
   - ``both``: θ_src itself (a rewound / fine-tuned ticket),
   - ``none``: this run's random initialization (the mask alone).
   The paper finds ``signs`` close to ``both`` and ``magnitudes`` close to ``none``.

Run: ``python scripts/sign_transfer.py --out results/sign_transfer`` (digits, ``--epochs 30``;
``--fast``: 2 epochs of 5 batches, to check that it runs). Writes ``table.md`` to ``--out``.
Extra ``sparsify fit`` flags can follow ``--``, e.g. ``-- --config data/cifar10``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparsify.app.cli import main as sparsify

KEEPS = ("signs", "magnitudes", "both", "none")


def fit(root: Path, config: list[str], epochs: int, seed: int, extra: list[str]) -> Path:
    """One ``sparsify fit`` run under ``root``; its log folder."""
    sparsify(
        [
            "fit",
            *config,
            *extra,
            f"--trainer.max_epochs={epochs}",
            f"--seed_everything={seed}",
            f"--trainer.default_root_dir={root}",
            "--trainer.enable_progress_bar=false",
            "--wandb=false",
        ]
    )
    (summary,) = root.glob("**/summary.json")
    return summary.parent


def transfer_config(path: Path, checkpoint: Path, keep: str, sparsity: float) -> Path:
    path.write_text(
        "trainer:\n  callbacks:\n    - class_path: sparsify.callbacks.SignTransfer\n"
        f"      init_args:\n        checkpoint: {checkpoint}\n        keep: {keep}\n"
        f"        sparsity: {sparsity}\n        scope: global\n"
    )
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/sign_transfer"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--fast", action="store_true", help="2 epochs of 5 batches")
    parser.add_argument("extra", nargs="*", help="more `sparsify fit` flags, after --")
    args = parser.parse_args(argv)
    epochs = 2 if args.fast else args.epochs
    extra = list(args.extra) + (["--trainer.limit_train_batches=5"] if args.fast else [])
    args.out.mkdir(parents=True, exist_ok=True)

    dense = fit(args.out / "dense", ["--config", "method/dense"], epochs, 0, extra)
    (checkpoint,) = dense.glob("checkpoints/final.ckpt")
    results = {"dense": json.loads((dense / "summary.json").read_text())}
    for keep in KEEPS:
        config = transfer_config(args.out / f"{keep}.yaml", checkpoint, keep, args.sparsity)
        run = fit(args.out / keep, ["--config", str(config)], epochs, 1, extra)
        results[keep] = json.loads((run / "summary.json").read_text())

    rows = ["| start | test accuracy | sparsity |", "|---|---|---|"]
    rows += [f"| {k} | {r['test_acc']:.4f} | {r['sparsity']:.4f} |" for k, r in results.items()]
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return results


if __name__ == "__main__":
    main()
