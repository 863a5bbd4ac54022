"""What ``import sparsify`` costs: seconds and modules loaded, each import in a fresh interpreter,
against ``import torch`` alone in the same run.

    python scripts/bench_import.py [--repeats 5] [--root CHECKOUT ...] [--also sparsify.app.cli]

``--root`` imports the ``sparsify`` of other checkouts (each folder goes first on the path in
its own runs), to compare versions on the same machine in one run. Prints one line per import:
the median seconds over the repeats, the modules in ``sys.modules`` afterwards, and the ratio of
the seconds to ``import torch``'s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

IMPORTS = ("torch", "sparsify")
PROBE = """
import json, sys, time
sys.path.insert(0, {root!r})
start = time.perf_counter()
import {name}
seconds = time.perf_counter() - start
print(json.dumps([seconds, len(sys.modules), {name}.__file__]))
"""


def measure(name: str, root: str) -> tuple[float, int, str]:
    code = PROBE.format(name=name, root=root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, modules, path = json.loads(out.stdout.splitlines()[-1])
    return seconds, modules, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--root", nargs="*", default=[""], help="checkouts whose sparsify to import (default: ours)"
    )
    parser.add_argument("--also", nargs="*", default=[], help="more modules, e.g. sparsify.app")
    args = parser.parse_args()
    runs = {(root, name): [] for root in args.root for name in [*IMPORTS, *args.also]}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits every import alike
        for root, name in runs:
            runs[root, name].append(measure(name, root))
    torch_seconds = statistics.median(
        s for (_, n), r in runs.items() if n == "torch" for s, _, _ in r
    )
    for (_, name), results in runs.items():
        seconds = statistics.median(s for s, _, _ in results)
        modules, path = results[-1][1], results[-1][2]
        print(
            f"import {name:<20} {seconds:6.2f} s  {modules:5d} modules  "
            f"{seconds / torch_seconds:4.1f}× torch  ({path})"
        )


if __name__ == "__main__":
    main()
