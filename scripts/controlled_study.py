"""The controlled study (docs/methods.md, "The controlled study"): a diagonal linear network on
underdetermined sparse regression, trained by full-batch gradient descent in plain PyTorch.

Truth x* ∈ R¹⁰⁰ with 5 non-zeros ±1, 40 measurements A ~ N(0, 1/40), y = A x*. The model is
x = m ⊙ w, trained on ½‖A x − y‖² with step size 0.02 for 40,000 steps (an "epoch" is 100 steps,
the unit of PILoT's schedules). Every run starts from x₀ = 0 split with inner scale β = 1
(m₀ = 1, w₀ = 0) except spred, which starts from a small random x₀ split with β = 0. Weight
decay is decoupled: m ← m − lr (∇m + α_t m), the same for w. Compared:

- weight decay α: never, always on, switched off after a fraction of the steps (Mirror, Mirror
  of the Flow);
- PILoT's fixed schedules of the synthetic study (Mask in the Mirror): α_k = α₀ · f(k) with f
  constant, 1/k, 1/k², 0.95^k (k = epoch + 1);
- explicit L1 of constant strength on x = m ⊙ w and on the mask m only;
- spred: β = 0 (|m₀| = |w₀|) with constant weight decay.

All runs of one seed train together as one batch of tensors. Writes ``error.png`` (relative
error ‖x_t − x*‖ / ‖x*‖ over training, first seed) and ``results.md`` (mean ± std over seeds of
the final relative error) to ``--out``.

    python scripts/controlled_study.py --out study            # 5 seeds, about a minute on a CPU
    python scripts/controlled_study.py --out study --fast     # 1 seed (the test's mode)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

SAMPLES, DIM, NONZEROS = 40, 100, 5
LR, STEPS, STEPS_PER_EPOCH = 0.02, 40_000, 100
RECORD_EVERY = 100


@dataclass
class Run:
    """One training configuration: a weight decay ``alpha(step)`` on m and w, an L1 strength
    on x (``l1_x``) or on m (``l1_m``), and the inner scale β of the initialization."""

    name: str
    alpha: Callable[[int], float] = field(default=lambda step: 0.0)
    l1_x: float = 0.0
    l1_m: float = 0.0
    beta: float = 1.0


def epoch(step: int) -> int:
    return step // STEPS_PER_EPOCH


def runs() -> list[Run]:
    return [
        Run("weight decay: never"),
        Run("weight decay 0.05: always on", alpha=lambda s: 0.05),
        Run("weight decay 0.05: off after 50 %", alpha=lambda s: 0.05 if s < STEPS // 2 else 0.0),
        Run("weight decay 0.2: always on", alpha=lambda s: 0.2),
        Run("weight decay 0.2: off after 10 %", alpha=lambda s: 0.2 if s < STEPS // 10 else 0.0),
        Run("PILoT α₀ = 0.2, constant", alpha=lambda s: 0.2),
        Run("PILoT α₀ = 0.2, 1/k", alpha=lambda s: 0.2 / (epoch(s) + 1)),
        Run("PILoT α₀ = 0.2, 1/k²", alpha=lambda s: 0.2 / (epoch(s) + 1) ** 2),
        Run("PILoT α₀ = 0.2, 0.95^k", alpha=lambda s: 0.2 * 0.95 ** epoch(s)),
        Run("L1 on x = m ⊙ w, λ = 0.01", l1_x=0.01),
        Run("L1 on m, λ = 0.01", l1_m=0.01),
        Run("spred (β = 0), weight decay 0.05", alpha=lambda s: 0.05, beta=0.0),
    ]


def problem(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (40 × 100), y = A x*, x* with 5 non-zeros ±1."""
    g = torch.Generator().manual_seed(seed)
    x_star = torch.zeros(DIM, dtype=torch.float64)
    support = torch.randperm(DIM, generator=g)[:NONZEROS]
    signs = torch.randint(0, 2, (NONZEROS,), generator=g, dtype=torch.float64) * 2 - 1
    x_star[support] = signs
    a = torch.randn(SAMPLES, DIM, generator=g, dtype=torch.float64) / math.sqrt(SAMPLES)
    return a, a @ x_star, x_star


def initial_factors(configs: list[Run], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """m₀, w₀ per run: x₀ = 0 split with β (m₀ = sqrt β, w₀ = 0); for β = 0 a small random x₀
    split with |m₀| = |w₀| = sqrt|x₀| (x₀ = 0 would be a saddle that never moves). Then
    m + w (or m − w) stays exactly 0: an entry of x keeps the sign of x₀ for ever."""
    g = torch.Generator().manual_seed(seed + 1)
    x0 = 1e-3 * torch.randn(DIM, generator=g, dtype=torch.float64)
    m, w = [], []
    for run in configs:
        if run.beta > 0:
            m.append(torch.full((DIM,), math.sqrt(run.beta), dtype=torch.float64))
            w.append(torch.zeros(DIM, dtype=torch.float64))
        else:
            m.append(x0.abs().sqrt())
            w.append(x0.sign() * x0.abs().sqrt())
    return torch.stack(m), torch.stack(w)


@torch.no_grad()
def train(configs: list[Run], seed: int, steps: int = STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Train every run on the problem of ``seed``; return the relative errors recorded every
    ``RECORD_EVERY`` steps (records × runs) and the final x (runs × 100)."""
    a, y, x_star = problem(seed)
    m, w = initial_factors(configs, seed)
    l1_x = torch.tensor([r.l1_x for r in configs], dtype=torch.float64)[:, None]
    l1_m = torch.tensor([r.l1_m for r in configs], dtype=torch.float64)[:, None]
    errors = []
    for step in range(steps):
        alpha = torch.tensor([r.alpha(step) for r in configs], dtype=torch.float64)[:, None]
        x = m * w
        if step % RECORD_EVERY == 0:
            errors.append((x - x_star).norm(dim=1) / x_star.norm())
        grad_x = (x @ a.T - y) @ a + l1_x * torch.sign(x)
        grad_m = grad_x * w + alpha * m + l1_m * torch.sign(m)
        grad_w = grad_x * m + alpha * w
        m, w = m - LR * grad_m, w - LR * grad_w
    x = m * w
    errors.append((x - x_star).norm(dim=1) / x_star.norm())
    return torch.stack(errors), x


def study(seeds: int, steps: int = STEPS) -> tuple[list[Run], torch.Tensor, torch.Tensor]:
    """Final relative errors (seeds × runs) and the first seed's error curves."""
    configs = runs()
    finals, curves = [], None
    for seed in range(seeds):
        errors, _ = train(configs, seed, steps)
        finals.append(errors[-1])
        curves = errors if curves is None else curves
    return configs, torch.stack(finals), curves


def table(configs: list[Run], finals: torch.Tensor) -> str:
    seeds = finals.shape[0]
    lines = [
        f"| method | relative error ‖x − x*‖/‖x*‖ ({seeds} seed{'s' if seeds > 1 else ''}) |",
        "|---|---|",
    ]
    for i, run in enumerate(configs):
        values = finals[:, i]
        spread = f" ± {values.std():.3f}" if seeds > 1 else ""
        lines.append(f"| {run.name} | {values.mean():.3f}{spread} |")
    return "\n".join(lines) + "\n"


def plot(configs: list[Run], curves: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [min(i * RECORD_EVERY, STEPS) for i in range(curves.shape[0])]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, run in enumerate(configs):
        ax.plot(steps, curves[:, i].clamp_min(1e-6), label=run.name, lw=1.3)
    ax.set_yscale("log")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("‖x_t − x*‖ / ‖x*‖")
    ax.set_title("Diagonal linear network, 40 samples, 100 unknowns, 5 non-zeros (seed 0)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("controlled_study"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="one seed (the test's mode)")
    args = parser.parse_args(argv)
    configs, finals, curves = study(1 if args.fast else args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table(configs, finals))
    plot(configs, curves, args.out / "error.png")
    print(table(configs, finals))
    return {run.name: float(finals[:, i].mean()) for i, run in enumerate(configs)}


if __name__ == "__main__":
    main()
