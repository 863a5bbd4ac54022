"""The experiments of "Mirror, Mirror of the Flow" (Jacobs, Zhou & Burkholz, ICML 2025), measured
through sparsify's own training path: weight decay on the model's own parameters, never / always
on at three strengths / switched off at 10, 25, 50, 75 % of training / decaying as 1/k or 0.95^k,
in four settings:

- ``sparse_coding``: Y = D Z*, the codes Z = u ⊙ v (experiment/sparse_coding_uv);
- ``matrix_sensing``: y_i = ⟨A_i, M*⟩, M = U Vᵀ (experiment/matrix_sensing);
- ``attention``: single-layer attention on the copy rule (experiment/attention_copy);
- ``lora``: rank-8 adapters B A on a GPT pretrained on the copy rule, fine-tuned on the permuted
  rule (experiment/gpt_copy, then experiment/lora_gpt_permute).

Every run is ``sparsify fit --config experiment/<setting> --config method/<recipe>`` with the
sizes below as flags, built by the CLI (``SparsifyCLI``) in this process and trained by its
Lightning Trainer; a recording callback is added to measure, besides the task's generalization
(relative recovery error of the planted truth; held-out loss and accuracy), the paper's three
effects:

- positional bias, where the solution lands: the share κ of the initialization that the solution
  keeps, κ = ⟨x_T, x₀⟩_N / ‖x₀‖²_N (for the linear problems in the null space N of the
  measurements, where the data say nothing; for the networks over all of the model's own
  matrices); κ = 1: the implicit bias is centred at the initialization, κ = 0: at 0;
- type of bias, which norm the solution is small in: ‖x‖₁ and ‖x‖₂ (sparse coding), nuclear and
  Frobenius norms (U Vᵀ, W_Q W_Kᵀ, B A), and the scale-free ratio ‖·‖₁/‖·‖₂ or ‖·‖_*/‖·‖_F
  (small: sparse / low rank);
- range shrinking: the largest |Z|, σ_max(U Vᵀ), or the largest |entry| of the model's own
  matrices over training, and whether it comes back after the switch-off.

Each finished run is kept in ``<out>/runs/<setting>_<recipe>_seed<k>.json`` and not run again,
so a study resumes, and seeds can run in separate processes (``--seeds 0 1``, ``--seeds 2 3``,
then ``--report``). Writes ``mirror_<setting>.csv`` (one row per run), ``mirror_<setting>.md``
(mean ± std over seeds) and ``mirror_<setting>.png`` (the four panels) to ``--out``.

    python scripts/mirror_study.py --setting matrix_sensing --out study         # all, 5 seeds
    python scripts/mirror_study.py --setting matrix_sensing --out /tmp/s --fast  # the tests' mode
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import yaml

from sparsify.app.cli import SparsifyCLI, compose, read_config
from sparsify.lora import lora_layers

RECIPES = [
    "wd_never",
    "wd_on_weak",
    "wd_on",
    "wd_on_strong",
    "wd_off_at_10",
    "wd_off_at_25",
    "wd_off_at_50",
    "wd_off_at_75",
    "wd_inverse",
    "wd_geometric",
]
FAST_RECIPES = ["wd_never", "wd_on", "wd_off_at_50"]
QUIET = [
    "--trainer.logger=false",
    "--trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--wandb=false",
]
RECORDS = 50  # points of the range curve over training


def build(configs: list[str], flags: list[str]) -> SparsifyCLI:
    """Compose the configs as ``sparsify fit`` does and instantiate model, data and trainer."""
    composed = compose([read_config(c) for c in configs])
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # as cli.main
    return SparsifyCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf", "exit_on_error": False},
        save_config_callback=None,
        auto_configure_optimizers=False,
        run=False,
        args=["--config", yaml.safe_dump(composed, sort_keys=False), *QUIET, *flags],
    )


def own_parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    """The model's own trainable matrices: u, v; U, V; the attention matrices; A, B."""
    return [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]


def largest_entry(module: torch.nn.Module) -> float:
    """The range of the model's own parameters: their largest |entry|."""
    return max(float(p.abs().max()) for p in own_parameters(module))


class Recorder(L.Callback):
    """Records the model's own parameters at the start, and ``range_of(module)`` over training."""

    def __init__(self, range_of: Callable[[torch.nn.Module], float]):
        self.range_of, self.steps, self.ranges = range_of, [], []

    def on_train_start(self, trainer, pl_module):
        self.every = max(1, int(trainer.estimated_stepping_batches) // RECORDS)
        self.initial = [p.detach().clone() for p in own_parameters(pl_module)]
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            self._record(trainer, pl_module)

    @torch.no_grad()
    def _record(self, trainer, pl_module):
        self.steps.append(trainer.global_step)
        self.ranges.append(self.range_of(pl_module.model))


def kept_share(final: torch.Tensor, initial: torch.Tensor) -> float:
    """κ = ⟨x_T, x₀⟩ / ‖x₀‖²: the share of the initialization the solution keeps."""
    return float((final * initial).sum() / initial.pow(2).sum())


def null_space_projector(inputs: torch.Tensor) -> torch.Tensor:
    """I − A⁺A for measurements ``inputs`` (n × d): the directions the data do not see."""
    a = inputs.double()
    return torch.eye(a.shape[1], dtype=torch.float64) - torch.linalg.pinv(a) @ a


def spectral_ratio(matrix: torch.Tensor) -> float:
    """‖M‖_* / ‖M‖_F: between 1 (rank 1) and sqrt(rank)."""
    s = torch.linalg.svdvals(matrix.double())
    return float(s.sum() / s.norm())


@dataclass
class Setting:
    """One of the paper's settings: its configs, the study's sizes as flags, and its measures."""

    name: str
    configs: list[str]
    flags: list[str]
    fast_flags: list[str]
    measure: Callable  # (cli, recorder) -> dict of final measures
    range_of: Callable[[torch.nn.Module], float] = largest_entry
    prepare: Callable | None = None  # (out, fast) -> extra flags (the LoRA base model)


def linear_measures(solution: torch.Tensor, truth: torch.Tensor, inputs, initial) -> dict:
    """Recovery error, κ in the null space of the measurements, and the norms of the solution
    against the truth's (both as column vectors ``(d, k)``)."""
    projector = null_space_projector(inputs)
    x, x0, truth = solution.double(), initial.double(), truth.double()
    return {
        "recovery_error": float((x - truth).norm() / truth.norm()),
        "kept_init": kept_share(projector @ x, projector @ x0),
        "l1_norm": float(x.abs().sum() / truth.abs().sum()),
        "l2_norm": float(x.norm() / truth.norm()),
    }


def sparse_coding_measures(cli, recorder) -> dict:
    model, data = cli.model.model, cli.datamodule
    codes = model.weight.detach().T  # θ = m ⊙ w, (atoms, signals)
    m0, w0 = recorder.initial
    out = linear_measures(codes, data.x_star, data.inputs, (m0 * w0).T)
    out["l1_over_l2"] = float(codes.abs().sum(0).div(codes.norm(dim=0)).mean())
    return out


def matrix_sensing_measures(cli, recorder) -> dict:
    model, data = cli.model.model, cli.datamodule
    u0, v0 = recorder.initial
    solution = model.matrix().detach()
    out = linear_measures(
        solution.reshape(-1, 1),
        data.x_star.reshape(-1, 1),
        data.inputs.flatten(1),
        (u0 @ v0).reshape(-1, 1),
    )
    del out["l1_norm"], out["l2_norm"]
    s, s_star = torch.linalg.svdvals(solution.double()), torch.linalg.svdvals(data.x_star.double())
    out["nuclear_norm"] = float(s.sum() / s_star.sum())
    out["frobenius_norm"] = float(s.norm() / s_star.norm())
    out["nuclear_over_frobenius"] = float(s.sum() / s.norm())
    return out


def network_measures(cli, recorder, matrices: list[torch.Tensor]) -> dict:
    """Held-out loss and accuracy, κ over the model's own matrices, ‖M‖_*/‖M‖_F of ``matrices``."""
    metrics = cli.trainer.validate(cli.model, cli.datamodule, verbose=False)[0]
    final = torch.cat([p.detach().flatten() for p in own_parameters(cli.model)])
    initial = torch.cat([p.flatten() for p in recorder.initial])
    ratios = [spectral_ratio(m) for m in matrices]
    return {
        "val_loss": metrics["val/loss"],
        "val_acc": metrics["val/acc"],
        "kept_init": kept_share(final, initial),
        "nuclear_over_frobenius": sum(ratios) / len(ratios),
    }


def attention_measures(cli, recorder) -> dict:
    attention = cli.model.model.blocks[0].attn
    query_key = (attention.q.weight.T @ attention.k.weight).detach()  # W_Q W_Kᵀ acting on x
    return network_measures(cli, recorder, [query_key])


def lora_measures(cli, recorder) -> dict:
    updates = [
        (layer.lora_B.weight @ layer.lora_A.weight).detach() for _, layer in lora_layers(cli.model)
    ]
    return network_measures(cli, recorder, updates)


# Shorter than the experiment configs, so that a study of 50 runs takes minutes on a shared CPU,
# with a stronger weight decay to act within them: sparse coding 600 steps of 0.15 (gradient-flow
# time 90) with α = 200 λ = 0.4 on u, v; matrix sensing with U, V ~ N(0, 0.1²), an
# initialization large enough that gradient descent alone stays near it (the analogue of β = 1
# for u ⊙ v), 800 steps of 0.05 on ½ Σ (⟨A_i, U Vᵀ⟩ − y_i)² (time 40) with α = 100 λ = 0.2.
SPARSE_CODING = [
    "--model.init_args.weight_decay=2e-3",
    "--trainer.max_epochs=6",
    "--trainer.limit_val_batches=0",
]
MATRIX_SENSING = [
    "--model.init_args.weight_decay=2e-3",
    "--trainer.max_epochs=8",
    "--model.init_args.model_kwargs={rows: 20, cols: 20, rank: 20, init_scale: 0.1}",
    "--model.init_args.lr=5.0",
    "--trainer.limit_val_batches=0",
]

# Transformers small enough for a shared CPU: 16-token sequences (lag 8) of 16 tokens, width 32,
# 640 training sequences in batches of 32, AdamW lr 1e-2 (cosine) for 10 epochs = 200 steps;
# weight decay λ = 1 (lr · λ · steps = 2: strong enough to act within 200 steps).
TRANSFORMER = [
    "--data.init_args.block_size=16",
    "--data.init_args.batch_size=32",
    "--data.init_args.train_sequences=640",
    "--data.init_args.val_sequences=500",
    "--model.init_args.lr=1e-2",
    "--trainer.check_val_every_n_epoch=1000",
]
ATTENTION = ["--model.init_args.model_kwargs={context_length: 16, width: 32}", *TRANSFORMER]
GPT = ["--model.init_args.model_kwargs={context_length: 16, width: 32, depth: 2, heads: 2}"]
GPT += TRANSFORMER


def pretrained_base(out: Path, fast: bool) -> list[str]:
    """Pretrain the GPT on the copy rule once (experiment/gpt_copy, method/dense, seed 0) and
    point the LoRA runs at its weights."""
    path = out / "gpt_copy_base.pt"
    if not path.is_file():
        epochs = 3 if fast else 10
        cli = build(
            ["experiment/gpt_copy", "method/dense"], [*GPT, f"--trainer.max_epochs={epochs}"]
        )
        cli.trainer.fit(cli.model, cli.datamodule)
        torch.save(cli.model.model.state_dict(), path)
    return [f"--model.init_args.init_from={path}"]


SETTINGS = {
    "sparse_coding": Setting(
        "sparse_coding",
        ["experiment/sparse_coding_uv"],
        SPARSE_CODING,
        SPARSE_CODING,
        sparse_coding_measures,
        range_of=lambda model: float(model.weight.abs().max()),
    ),
    "matrix_sensing": Setting(
        "matrix_sensing",
        ["experiment/matrix_sensing"],
        MATRIX_SENSING,
        MATRIX_SENSING,
        matrix_sensing_measures,
        range_of=lambda model: float(torch.linalg.matrix_norm(model.matrix(), ord=2)),
    ),
    "attention": Setting(
        "attention",
        ["experiment/attention_copy"],
        [*ATTENTION, "--model.init_args.weight_decay=1.0", "--trainer.max_epochs=10"],
        [*ATTENTION, "--model.init_args.weight_decay=1.0", "--trainer.max_epochs=3"],
        attention_measures,
    ),
    "lora": Setting(
        "lora",
        ["experiment/lora_gpt_permute"],
        [*GPT, "--model.init_args.weight_decay=1.0", "--trainer.max_epochs=10"],
        [*GPT, "--model.init_args.weight_decay=1.0", "--trainer.max_epochs=3"],
        lora_measures,
        prepare=pretrained_base,
    ),
}


def run(setting: Setting, recipe: str, seed: int, flags: list[str]) -> dict:
    seeds = [f"--seed_everything={seed}", f"--data.init_args.seed={seed}"]  # model and data
    cli = build([*setting.configs, f"method/{recipe}"], [*flags, *seeds])
    recorder = Recorder(setting.range_of)
    cli.trainer.callbacks.append(recorder)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    row = {"recipe": recipe, "seed": seed, **setting.measure(cli, recorder)}
    row["max_range"] = max(recorder.ranges)
    row["final_range"] = recorder.ranges[-1]
    row["wall_s"] = time.perf_counter() - start
    return row | {"curve": (recorder.steps, recorder.ranges)}


# Reporting ------------------------------------------------------------------------------------

GENERALIZATION = ("recovery_error", "val_loss", "val_acc")
COLUMNS = {
    "recovery_error": "recovery error ‖x − x*‖/‖x*‖",
    "val_loss": "held-out loss",
    "val_acc": "held-out acc",
    "kept_init": "κ (init kept)",
    "l1_norm": "‖x‖₁/‖x*‖₁",
    "l2_norm": "‖x‖₂/‖x*‖₂",
    "l1_over_l2": "‖x‖₁/‖x‖₂",
    "nuclear_norm": "‖X‖_*/‖X*‖_*",
    "frobenius_norm": "‖X‖_F/‖X*‖_F",
    "nuclear_over_frobenius": "‖M‖_*/‖M‖_F",
    "max_range": "largest range",
    "final_range": "final range",
    "wall_s": "wall (s)",
}


def summarize(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """recipe → measure → (mean, sample std) over the seeds, recipes in the order run."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        runs = [r for r in rows if r["recipe"] == recipe]
        out[recipe] = {}
        for key in COLUMNS:
            if key in runs[0]:
                values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
                std = float(values.std()) if len(values) > 1 else 0.0
                out[recipe][key] = (float(values.mean()), std)
    return out


def table(summary: dict, seeds: int) -> str:
    keys = [k for k in COLUMNS if k in next(iter(summary.values()))]
    lines = [
        f"| recipe ({seeds} seed{'s' if seeds > 1 else ''}) | "
        + " | ".join(COLUMNS[k] for k in keys)
        + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for recipe, measures in summary.items():
        cells = []
        for key in keys:
            mean, std = measures[key]
            digits = 0 if key == "wall_s" else 3
            cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if seeds > 1 else f"{mean:.3f}")
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    keys = ["recipe", "seed", *[k for k in COLUMNS if k in rows[0]]]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot(setting: str, rows: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = list(summary)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    measure = next(k for k in GENERALIZATION if k in summary[recipes[0]])
    panels = [
        (axes[0, 0], measure, f"generalization: {COLUMNS[measure]}"),
        (axes[0, 1], "kept_init", "positional bias: share κ of the initialization kept"),
    ]
    for ax, key, title in panels:
        means = [summary[r][key][0] for r in recipes]
        stds = [summary[r][key][1] for r in recipes]
        ax.bar(range(len(recipes)), means, yerr=stds, color="tab:blue", alpha=0.8, capsize=3)
        ax.set_xticks(range(len(recipes)), recipes, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if key == "recovery_error":
            ax.set_yscale("log")
    ax = axes[1, 0]
    pair = {
        "sparse_coding": ("l2_norm", "l1_norm"),
        "matrix_sensing": ("frobenius_norm", "nuclear_norm"),
    }
    if setting in pair:
        x_key, y_key = pair[setting]
        for recipe in recipes:
            ax.errorbar(
                summary[recipe][x_key][0],
                summary[recipe][y_key][0],
                xerr=summary[recipe][x_key][1],
                yerr=summary[recipe][y_key][1],
                fmt="o",
                label=recipe,
                capsize=2,
            )
        ax.plot([1], [1], "k*", markersize=14, label="the truth")
        ax.set_xlabel(COLUMNS[x_key])
        ax.set_ylabel(COLUMNS[y_key])
        ax.legend(fontsize=7)
        ax.set_title("type of bias: the solution's norms against the truth's", fontsize=10)
    else:
        key = "nuclear_over_frobenius"
        means = [summary[r][key][0] for r in recipes]
        stds = [summary[r][key][1] for r in recipes]
        ax.bar(range(len(recipes)), means, yerr=stds, color="tab:green", alpha=0.8, capsize=3)
        ax.set_xticks(range(len(recipes)), recipes, rotation=45, ha="right", fontsize=8)
        ax.set_title("type of bias: ‖M‖_*/‖M‖_F (1: rank one; low: nuclear-norm-like)", fontsize=10)
    ax = axes[1, 1]
    for recipe in recipes:
        curves = [r["curve"] for r in rows if r["recipe"] == recipe]
        steps = curves[0][0]
        length = min(len(c[1]) for c in curves)
        mean = torch.tensor([c[1][:length] for c in curves]).mean(0)
        ax.plot(steps[:length], mean, label=recipe, lw=1.3)
    ax.set_xlabel("optimizer step")
    ax.set_title(
        f"range shrinking: {RANGE_LABEL.get(setting, 'largest |parameter|')} (mean over seeds)",
        fontsize=10,
    )
    ax.legend(fontsize=7)
    fig.suptitle(f"Mirror, Mirror of the Flow: {setting.replace('_', ' ')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


RANGE_LABEL = {"sparse_coding": "largest |Z|", "matrix_sensing": "σ_max(U Vᵀ)"}


def run_file(out: Path, setting: str, recipe: str, seed: int) -> Path:
    return out / "runs" / f"{setting}_{recipe}_seed{seed}.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--out", type=Path, default=Path("mirror_study"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--recipes", nargs="+", default=None, help="default: all ten")
    parser.add_argument("--fast", action="store_true", help="seed 0, 3 recipes (the tests' mode)")
    parser.add_argument(
        "--report", action="store_true", help="only write the report of the runs in --out"
    )
    args = parser.parse_args(argv)
    setting = SETTINGS[args.setting]
    seeds = [0] if args.fast else args.seeds
    recipes = args.recipes or (FAST_RECIPES if args.fast else RECIPES)
    flags = setting.fast_flags if args.fast else setting.flags
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    if setting.prepare is not None and not args.report:
        flags = [*flags, *setting.prepare(args.out, args.fast)]
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    for seed in [] if args.report else seeds:
        for recipe in recipes:
            path = run_file(args.out, setting.name, recipe, seed)
            if not path.is_file():  # finished runs are kept: a study resumes, seeds run apart
                path.write_text(json.dumps(run(setting, recipe, seed, flags)))
    rows = [
        json.loads(path.read_text())
        for recipe in recipes
        for path in sorted((args.out / "runs").glob(f"{setting.name}_{recipe}_seed*.json"))
    ]
    rows.sort(key=lambda r: (r["seed"], recipes.index(r["recipe"])))
    name = f"mirror_{setting.name}"
    summary = summarize(rows)
    seen = len({r["seed"] for r in rows})
    write_csv(rows, args.out / f"{name}.csv")
    text = table(summary, seen)
    training = sum(r["wall_s"] for r in rows)
    (args.out / f"{name}.md").write_text(text + f"\ntraining time of all runs {training:.0f} s\n")
    plot(setting.name, rows, summary, args.out / f"{name}.png")
    print(text, f"training time of all runs {training:.0f} s", sep="\n")
    return {recipe: {k: v[0] for k, v in measures.items()} for recipe, measures in summary.items()}


if __name__ == "__main__":
    torch.set_num_threads(1)  # one core per study: two studies share the machine's two
    main()
