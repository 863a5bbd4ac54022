"""How far sparsify's float32 SynFlow masks land from its float64 ones on torchvision ResNet-50
(100 rounds, sparsity 0.9, seed 0), and, for scale, how far two float64 runs land that differ
only in the order of their floating-point sums (2 threads against 1). docs/performance.md.

    python scripts/synflow_float32_overlap.py --check float32   # about 2 minutes on 2 cores
    python scripts/synflow_float32_overlap.py --check threads   # about 3.5 minutes
"""

import argparse
import time

import torch
import torchvision

import sparsify.pai as pai
from sparsify.pai import pai_masks


def synflow(float64: bool, threads: int | None = None) -> tuple[dict, float]:
    if threads:
        torch.set_num_threads(threads)
    scorer = pai.homogeneous_scorer
    if float64:
        pai.homogeneous_scorer = lambda traced: None  # no rescaled float32 trace: float64
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=1000)
    start = time.perf_counter()
    try:
        masks = pai_masks(model, 0.9, "synflow", rounds=100, input_shape=(3, 224, 224))
    finally:
        pai.homogeneous_scorer = scorer
    return masks, time.perf_counter() - start


def overlap(reference: dict, other: dict) -> float:
    both = sum(int((reference[k].bool() & other[k].bool()).sum()) for k in reference)
    return both / sum(int(mask.sum()) for mask in reference.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", choices=["float32", "threads"], required=True)
    args = parser.parse_args()
    if args.check == "float32":
        (m32, t32), (m64, t64) = synflow(float64=False), synflow(float64=True)
        print(f"float32 {t32:.1f} s, float64 {t64:.1f} s; overlap {overlap(m64, m32):.5f}")
    else:
        (two, t2), (one, t1) = synflow(True, threads=2), synflow(True, threads=1)
        print(f"float64 2 threads {t2:.1f} s, 1 thread {t1:.1f} s; overlap {overlap(two, one):.5f}")


if __name__ == "__main__":
    main()
