"""Where sparsify's float32 SynFlow masks leave its float64 ones on torchvision ResNet-50
(sparsity 0.9, seed 0), round by round, and why (docs/performance.md).

    python scripts/synflow_float32_overlap.py --check rounds    # about 4 minutes, 1 thread
    python scripts/synflow_float32_overlap.py --check threads   # about 3.5 minutes

``rounds``: ``pai_masks`` with ``synflow_precision="float64"``, then with each of
``--precisions`` (default float32); for each, the overlap |a ∧ b| / |b| with the float64 masks
after rounds 10, 25, 50, 75 and 100. For the float64 run it also counts, every round, the live
scores within a relative 1e-6 and 1e-5 of the round's threshold t (|s − t| ≤ δ t): the
near-ties that float32 rounding (~1e-7 relative, up to a few 1e-6) can put on the other side.
``threads``: two float64 runs that differ only in the order of their floating-point sums (2
threads against 1).
"""

import argparse
import time

import torch
import torchvision

import sparsify.pai as pai
from sparsify.pai import pai_masks

RECORDED = (10, 25, 50, 75, 100)


def synflow(precision: str, rounds: int = 100, threads: int | None = None, bands: list = None):
    """The final masks, the masks after each ``RECORDED`` round, and the wall time; with
    ``bands``, the near-tie counts of every round are appended to it."""
    if threads:
        torch.set_num_threads(threads)
    select_mask = pai.select_mask
    recorded = {}

    def recording(scores, current, sparsity, **kwargs):
        chosen = select_mask(scores, current, sparsity, **kwargs)
        k = len(recorded.setdefault("all", [])) + 1
        recorded["all"].append(None)
        if k in RECORDED:
            recorded[k] = {name: mask.clone() for name, mask in chosen.items()}
        if bands is not None:
            threshold = min(float(s[chosen[n]].min()) for n, s in scores.items() if chosen[n].any())
            gap = {d: 0 for d in (1e-6, 1e-5)}
            for name, s in scores.items():
                distance = (s[current[name]].double() - threshold).abs()
                for d in gap:
                    gap[d] += int((distance <= d * threshold).sum())
            bands.append(gap)
        return chosen

    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=1000)
    pai.select_mask = recording
    start = time.perf_counter()
    try:
        masks = pai_masks(
            model,
            0.9,
            "synflow",
            rounds=rounds,
            input_shape=(3, 224, 224),
            synflow_precision=precision,
        )
    finally:
        pai.select_mask = select_mask
    recorded.pop("all")
    return masks, recorded, time.perf_counter() - start


def overlap(reference: dict, other: dict) -> float:
    both = sum(int((reference[k].bool() & other[k].bool()).sum()) for k in reference)
    return both / sum(int(mask.sum()) for mask in reference.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", choices=["rounds", "threads"], required=True)
    parser.add_argument("--precisions", nargs="+", default=["float32"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.check == "rounds":
        bands = []
        _, exact, t64 = synflow("float64", threads=args.threads, bands=bands)
        print(f"float64: {t64:.1f} s")
        print("near-ties per round (within 1e-6 / 1e-5 of the threshold), rounds 1-100:")
        print(" ".join(f"{b[1e-6]}/{b[1e-5]}" for b in bands))
        for precision in args.precisions:
            _, ours, t = synflow(precision, threads=args.threads)
            each = ", ".join(f"round {k}: {overlap(exact[k], ours[k]):.5f}" for k in RECORDED)
            print(f"{precision}: {t:.1f} s; overlap with float64 after {each}")
    else:
        (two, _, t2), (one, _, t1) = synflow("float64", threads=2), synflow("float64", threads=1)
        print(f"float64 2 threads {t2:.1f} s, 1 thread {t1:.1f} s; overlap {overlap(two, one):.5f}")


if __name__ == "__main__":
    main()
