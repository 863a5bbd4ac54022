"""The single-neuron study of Sign-In to the Lottery (NeurIPS 2025).

docs/pai.md, "The single-neuron study", has the setting and the measured table.

One hidden ReLU neuron, f(x) = a · relu(w · x), x ∈ [0, 1]^d, learns the target
y = relu(w* · x) (a* = 1, w* = 1) by full-batch gradient descent with a small step (close
to gradient flow), from the four sign combinations of the initial (a, w): |a₀| = 1 and
w₀ = ±(1/√d) · 1, so that a₀² = ‖w₀‖² (balanced).

- plain: gradient descent on (a, w). Gradient flow conserves a² − ‖w‖², here 0: from a < 0
  the output weight can only reach 0 together with w, and the neuron dies (a saddle).
- Sign-In: every parameter θ (a and each w_i) is m ⊙ v with inner scale m² − v² = 1,
  re-split every ``--every`` steps. Between rescales the flow conserves
  v_a² − Σ v_{w_i}² with v² = (sqrt(1 + 4θ²) − 1) / 2, which is concave in θ²: spread over d
  coordinates, w keeps more of it than a, so a crosses zero while w stays positive.
- w < 0: every input has w · x ≤ 0, the neuron is dead from the start, no gradient reaches it
  and no reparametrization helps; that case needs dense (overparameterized) training.

Run: ``python scripts/single_neuron.py --out results/single_neuron`` (``--fast``: fewer, larger
steps, a few seconds). Writes ``table.md`` and ``single_neuron.png`` (loss curves) to ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sparsify.reparam import split

DIM, SAMPLES, TARGET = 4, 64, 1.0
SIGNS = [(1, 1), (-1, 1), (1, -1), (-1, -1)]
RECOVERED = 1e-6  # final loss below which the target counts as recovered


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(SAMPLES, DIM, generator=g, dtype=torch.float64)
    return x, torch.relu(x @ torch.full((DIM,), TARGET, dtype=torch.float64))


def train(sign_a: int, sign_w: int, sign_in: bool, lr: float, steps: int, every: int) -> dict:
    """Gradient descent from a₀ = sign_a, w₀ = sign_w / √d · 1; the loss curve and the end."""
    x, y = data()
    a0 = torch.tensor([float(sign_a)], dtype=torch.float64)
    w0 = torch.full((DIM,), sign_w / DIM**0.5, dtype=torch.float64)
    params = [*split(a0, 1.0), *split(w0, 1.0)] if sign_in else [a0, w0]
    for p in params:
        p.requires_grad_(True)

    def network():
        return (params[0] * params[1], params[2] * params[3]) if sign_in else tuple(params)

    losses = []
    for step in range(1, steps + 1):
        a, w = network()
        loss = 0.5 * ((a * torch.relu(x @ w) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        losses.append(float(loss.detach()))
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g
            if sign_in and step % every == 0:
                for m, v in (params[:2], params[2:]):
                    new_m, new_v = split(m * v, 1.0)
                    m.copy_(new_m)
                    v.copy_(new_v)
    with torch.no_grad():
        a, w = network()
        final = float(0.5 * ((a * torch.relu(x @ w) - y) ** 2).mean())
    return {"losses": losses, "loss": final, "a": float(a), "w": w.tolist()}


def study(fast: bool) -> dict:
    lr, steps = (0.2, 1500) if fast else (0.05, 20000)
    every = 50 if fast else 200
    return {
        (sa, sw, sign_in): train(sa, sw, sign_in, lr, steps, every)
        for sa, sw in SIGNS
        for sign_in in (False, True)
    }


def table(results: dict) -> str:
    rows = [
        "| a₀ | w₀ | plain: loss | plain: recovered | Sign-In: loss | Sign-In: recovered |",
        "|---|---|---|---|---|---|",
    ]
    for sa, sw in SIGNS:
        cells = []
        for sign_in in (False, True):
            r = results[(sa, sw, sign_in)]
            cells += [f"{r['loss']:.2e}", "yes" if r["loss"] < RECOVERED else "no"]
        rows.append(
            f"| {'+' if sa > 0 else '−'} | {'+' if sw > 0 else '−'} | " + " | ".join(cells) + " |"
        )
    return "\n".join(rows) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, sign_in in zip(axes, (False, True)):
        for sa, sw in SIGNS:
            losses = results[(sa, sw, sign_in)]["losses"]
            label = f"a₀ {'+' if sa > 0 else '−'}, w₀ {'+' if sw > 0 else '−'}"
            ax.semilogy([max(v, 1e-30) for v in losses], label=label)
        ax.set_title("Sign-In (m ⊙ v, β = 1)" if sign_in else "plain gradient descent")
        ax.set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/single_neuron"))
    parser.add_argument("--fast", action="store_true", help="fewer, larger steps (seconds)")
    args = parser.parse_args(argv)
    results = study(args.fast)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table(results))
    plot(results, args.out / "single_neuron.png")
    print(table(results))
    return results


if __name__ == "__main__":
    main()
