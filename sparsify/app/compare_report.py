"""The results of a comparison (``sparsify compare``): ``results.csv`` (one row per run),
``results.md`` (mean ± sample standard deviation over seeds per method and sparsity),
``accuracy_vs_sparsity.png``, ``accuracy_vs_flops.png`` (where the runs counted FLOPs) and
``layer_density.png``."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

COLUMNS = (
    "method",
    "model",  # the network (its registry name)
    "sparsity_target",  # empty for a reference method
    "seed",
    "test_acc",
    "family",  # sparsify.methods.FAMILIES: reference (no target sparsity), PaI, DST, ...
    "val_acc",  # of the final model on the validation split: tune on it, never on test_acc
    "test_acc_before_pruning",
    "sparsity",  # achieved: zero effective weights over all prunable weights
    "inference_flops",  # per example, of the dense model's (sparsify.flops, RigL's count)
    "train_flops",  # of the whole run, of dense training's of the same length
    "sign_flips",  # where a callback logs them
    "wall_time_s",
    "run_dir",
)


def write_report(
    rows: list[dict], out: Path, density_at: float, published: dict | None = None
) -> list[Path]:
    """Write the table, the summary and the plots of ``rows``, with the ``published`` numbers
    (``sparsify.app.compare.check_published``) beside them; return the paths written."""
    published = published or {}
    written = [
        write_csv(rows, out / "results.csv"),
        write_markdown(rows, out / "results.md", published),
    ]
    if rows:
        written.append(plot_accuracy(rows, out / "accuracy_vs_sparsity.png", published))
    if any(row.get("inference_flops") is not None for row in rows):
        written.append(plot_accuracy_vs_flops(rows, out / "accuracy_vs_flops.png"))
    if any(row["sparsity_target"] == density_at for row in rows):
        written.append(plot_layer_density(rows, density_at, out / "layer_density.png"))
    return written


def write_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by (method, target sparsity), in the order they first appear."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["method"], row["sparsity_target"]), []).append(row)
    return grouped


def mean_std(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std_text(values: list, scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` of the values that are there, times ``scale``; the mean alone for one,
    nothing for none. The cells of every results table (this report's and the scripts')."""
    present = [v for v in values if v is not None]
    stats = mean_std(present)
    if stats is None:
        return ""
    mean, std = scale * stats[0], scale * stats[1]
    return f"{mean:.{digits}f}" if len(present) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def published_value(published: dict, method: str, target: float | None) -> float | None:
    """The paper's top-1 (%) for ``method`` at ``target``, if the comparison gives one."""
    value = published.get(method)
    return value.get(target) if isinstance(value, dict) else value


def write_markdown(rows: list[dict], path: Path, published: dict | None = None) -> Path:
    published = published or {}
    header = "| method | family | target sparsity | runs | test acc (%) | "
    header += "published (%) | " if published else ""
    header += "before pruning (%) | achieved sparsity (%) | inference FLOPs (× dense) | "
    header += "training FLOPs (× dense) | sign flips | wall time (s) |"
    lines = [
        "Mean ± sample standard deviation over seeds.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for (method, target), group in groups(rows).items():
        column = {key: [row.get(key) for row in group] for key in COLUMNS}
        target_text = "—" if target is None else f"{100 * target:g} %"
        cells = [
            method,
            group[0]["family"],
            target_text,
            str(len(group)),
            mean_std_text(column["test_acc"], 100, 2),
            *(
                [mean_std_text([published_value(published, method, target)], 1, 2)]
                if published
                else []
            ),
            mean_std_text(column["test_acc_before_pruning"], 100, 2),
            mean_std_text(column["sparsity"], 100, 2),
            mean_std_text(column["inference_flops"], 1, 3),
            mean_std_text(column["train_flops"], 1, 3),
            mean_std_text(column["sign_flips"], 1, 1),
            mean_std_text(column["wall_time_s"], 1, 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    return path


def colors(rows: list[dict]) -> dict:
    """One color per method, the same in every plot: matplotlib's ten default colors, or the
    twenty of ``tab20`` (ten hues, dark and light) when there are more methods."""
    from matplotlib import colormaps

    methods = list(dict.fromkeys(row["method"] for row in rows))
    if len(methods) <= 10:
        return {method: f"C{i}" for i, method in enumerate(methods)}
    return {method: colormaps["tab20"](i % 20) for i, method in enumerate(methods)}


MARKERS = "os^Dv<>ph*"  # with the color, tells apart up to 20 methods in one plot


def compression(sparsity: float) -> float:
    """log10(1 / (1 − s)): 90 % → 1, 99 % → 2, so high sparsities are spread apart."""
    return -math.log10(1 - sparsity)


def plot_accuracy(rows: list[dict], path: Path, published: dict | None = None) -> Path:
    """Test accuracy against target sparsity: PaI methods dashed, the other families solid,
    reference methods (dense) a dotted horizontal line with its ± std band; error bars are ± std
    over seeds; ``published`` numbers as crosses in the method's color."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods: dict[str, dict] = {}
    for (method, target), group in groups(rows).items():
        stats = mean_std([row["test_acc"] for row in group])
        if stats is not None:
            methods.setdefault(method, {"family": group[0]["family"], "points": []})
            methods[method]["points"].append((target, *stats))
    targets = sorted({row["sparsity_target"] for row in rows} - {None})
    color_of = colors(rows)
    for index, (method, data) in enumerate(methods.items()):
        color = color_of[method]
        if data["family"] == "reference":
            _, mean, std = data["points"][0]
            ax.axhline(100 * mean, color=color, linestyle=":", label=method)
            ax.axhspan(100 * (mean - std), 100 * (mean + std), color=color, alpha=0.15)
            continue
        points = sorted(data["points"])
        ax.errorbar(
            [compression(t) for t, _, _ in points],
            [100 * m for _, m, _ in points],
            yerr=[100 * s for _, _, s in points],
            color=color,
            marker=MARKERS[index % len(MARKERS)],
            capsize=3,
            linestyle="--" if data["family"] == "PaI" else "-",
            label=f"{method} (PaI)" if data["family"] == "PaI" else method,
        )
    for method, value in (published or {}).items():
        if method not in color_of:
            continue
        if not isinstance(value, dict):
            ax.axhline(value, color=color_of[method], linestyle="-.", linewidth=0.8)
            continue
        points = sorted((t, v) for t, v in value.items() if t in targets)
        x = [compression(t) for t, _ in points]
        ax.plot(x, [v for _, v in points], "x", color=color_of[method], markersize=8)
    if published:
        ax.plot([], [], "x", color="gray", label="published")
    ax.set_xticks([compression(t) for t in targets], [f"{100 * t:g}" for t in targets])
    ax.set_xlabel("target sparsity (%), log scale of 1 / (1 − s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs. sparsity: PaI dashed, the others solid, reference dotted")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_accuracy_vs_flops(rows: list[dict], path: Path) -> Path:
    """Test accuracy against inference FLOPs per example relative to the dense model (log
    scale; dense = 1), one point per method and target sparsity (mean over seeds, error bars
    ± std of both); PaI hollow, the others filled, a reference method at its own FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    color_of = colors(rows)
    for index, method in enumerate(dict.fromkeys(row["method"] for row in rows)):
        points = []
        for (name, _), group in groups(rows).items():
            acc = mean_std([row["test_acc"] for row in group])
            cost = mean_std([row.get("inference_flops") for row in group])
            if name == method and acc is not None and cost is not None:
                points.append((cost, acc))
        if not points:
            continue
        points.sort()
        family = next(row["family"] for row in rows if row["method"] == method)
        ax.errorbar(
            [c for (c, _), _ in points],
            [100 * a for _, (a, _) in points],
            xerr=[s for (_, s), _ in points],
            yerr=[100 * s for _, (_, s) in points],
            color=color_of[method],
            marker=MARKERS[index % len(MARKERS)],
            markerfacecolor="none" if family == "PaI" else color_of[method],
            capsize=3,
            linestyle="--" if family == "PaI" else "-",
            label=f"{method} (PaI)" if family == "PaI" else method,
        )
    ax.set_xscale("log")
    ax.set_xlabel("inference FLOPs per example, relative to dense (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs. inference FLOPs (RigL's count)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_layer_density(rows: list[dict], sparsity: float, path: Path) -> Path:
    """Per-layer density (mean over seeds) of each method at one target sparsity, grouped bars
    on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    densities: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row["sparsity_target"] == sparsity:
            per_layer = densities.setdefault(row["method"], {})
            for layer, density in row["layer_density"].items():
                per_layer.setdefault(layer, []).append(density)
    layers = list(dict.fromkeys(layer for d in densities.values() for layer in d))
    width = 0.8 / len(densities)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(layers) + 2), 4.5))
    color_of = colors(rows)
    for i, (method, per_layer) in enumerate(densities.items()):
        heights = [statistics.fmean(per_layer.get(layer, [math.nan])) for layer in layers]
        offsets = [j - 0.4 + (i + 0.5) * width for j in range(len(layers))]
        ax.bar(offsets, heights, width=width, label=method, color=color_of[method])
    ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right")
    ax.set_yscale("log")
    lowest = min(min(statistics.fmean(v) for v in d.values()) for d in densities.values())
    ax.set_ylim(10 ** math.floor(math.log10(max(lowest, 1e-4))), 1.05)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:g} %"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("density (non-zero fraction)")
    ax.set_title(f"per-layer density at {100 * sparsity:g} % target sparsity")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def log_to_wandb(out: Path, name: str, project: str = "sparsify") -> str:
    """One more W&B run in the comparison's group (``job_type="compare"``) holding the plots
    and the results table; online or offline as ``sparsify.app.tracking.resolve_mode`` decides.
    Returns the run's folder."""
    import wandb

    from sparsify.app.tracking import resolve_mode

    run = wandb.init(
        project=project,
        group=name,
        job_type="compare",
        name=f"{name}-results",
        dir=str(out),
        mode=resolve_mode("auto"),
    )
    with open(out / "results.csv", newline="") as f:
        table = list(csv.reader(f))
    logged = {
        "accuracy_vs_sparsity": wandb.Image(str(out / "accuracy_vs_sparsity.png")),
        "layer_density": wandb.Image(str(out / "layer_density.png")),
        "results": wandb.Table(columns=table[0], data=table[1:]),
    }
    if (out / "accuracy_vs_flops.png").is_file():
        logged["accuracy_vs_flops"] = wandb.Image(str(out / "accuracy_vs_flops.png"))
    run.log(logged)
    folder = str(Path(run.dir).parent)
    run.finish()
    return folder
