"""Every shipped method recipe by name: its family, the arguments that hold its target sparsity,
and the recipe file that runs it.

    >>> from sparsify.methods import method
    >>> method("gmp").family, method("gmp").targets
    ('dense-to-sparse', ('MagnitudePruning.final_sparsity',))

The families, as ``sparsify compare`` reports and draws them:

- ``reference``: prunes nothing (no target sparsity); a comparison trains it once per seed, as
  the line the sparse methods are measured against (dense training, HAM alone, the weight-decay
  schedules).
- ``dense-to-sparse``: trains dense and removes weights on a schedule (GMP, AC/DC, IMP, LRR).
- ``DST``: dynamic sparse training, sparse from the first step with a mask that moves (RigL).
- ``PaI``: pruning at initialization, a fixed mask chosen before the first step (SNIP, GraSP,
  SynFlow, random ERK).
- ``continuous``: an implicit or explicit sparsity bias during training (PILoT, spred, STR,
  continuous sparsification, L1, weight-decay switch-off), then one-shot magnitude pruning to
  the target.

A target is ``Class.argument``: the callback of that class (in the recipe's
``trainer.callbacks``) whose argument is set to each sparsity of a comparison grid. A recipe
with a ``driver`` is not a ``sparsify fit`` recipe but the arguments of a Python driver that
trains several times (``iterative``: ``sparsify.lightning.iterative.iterative_pruning``); its
target is the driver's own argument (``iterative_pruning.sparsity``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsify.errors import ConfigError

FAMILIES = ("reference", "dense-to-sparse", "DST", "PaI", "continuous")
DRIVERS = {"iterative": "iterative_pruning"}  # driver: the section of its recipe (its arguments)


@dataclass(frozen=True)
class MethodRecipe:
    name: str  # ``gmp``: what ``sparsify compare`` calls it (``method/gmp``)
    family: str  # one of FAMILIES
    targets: tuple[str, ...]  # ``Class.argument`` set to the target sparsity; () for reference
    recipe: str  # the shipped config that runs it (``method/gmp``)
    driver: str | None = None  # None: a ``sparsify fit`` recipe; else a key of DRIVERS


def _fit(name: str, family: str, *targets: str) -> MethodRecipe:
    return MethodRecipe(name, family, targets, f"method/{name}")


PRUNE_AT_END = "PruneAtEnd.sparsity"
GMP = "MagnitudePruning.final_sparsity"
PRUNE_AT_INIT = "PruneAtInit.sparsity"
ITERATIVE = "iterative_pruning.sparsity"

METHODS: dict[str, MethodRecipe] = {
    entry.name: entry
    for entry in [
        _fit("dense", "reference"),
        _fit("ham", "reference"),
        _fit("ham_imagenet", "reference"),
        *(
            _fit(f"wd_{name}", "reference")
            for name in ("geometric", "inverse", "never", "on", "on_strong", "on_weak")
        ),
        *(_fit(f"wd_off_at_{at}", "reference") for at in (10, 25, 50, 75)),
        _fit("gmp", "dense-to-sparse", GMP),
        _fit("ham_gmp", "dense-to-sparse", GMP),
        _fit("acdc", "dense-to-sparse", "ACDC.sparsity"),
        _fit("acdc_cifar", "dense-to-sparse", "ACDC.sparsity"),
        _fit("acdc_signin", "dense-to-sparse", "ACDC.sparsity"),
        *(
            MethodRecipe(name, "dense-to-sparse", (ITERATIVE,), f"iterative/{name}", "iterative")
            for name in ("imp", "lrr")
        ),
        *(
            _fit(name, "DST", "RiGL.sparsity")
            for name in ("rigl", "rigl_imagenet", "rigl_signin", "rigl_signin_imagenet")
        ),
        *(
            _fit(name, "PaI", PRUNE_AT_INIT)
            for name in (
                "snip",
                "snip_signin",
                "grasp",
                "grasp_signin",
                "synflow",
                "synflow_signin",
                "pai_random_erk",
                "pai_random_erk_signin",
                "ham_pai",
            )
        ),
        *(
            _fit(name, "continuous", "PILoT.sparsity", PRUNE_AT_END)
            for name in ("pilot", "pilot_imagenet")
        ),
        *(
            _fit(name, "continuous", PRUNE_AT_END)
            for name in (
                "spred",
                "spred_imagenet",
                "str",
                "str_imagenet",
                "cs",
                "cs_one_round",
                "l1_mask",
                "l1_theta",
                "wd_switch_off",
            )
        ),
    ]
}


def method(name: str) -> MethodRecipe:
    """The registered method ``name`` (``gmp`` or ``method/gmp``); any other name fails with
    the registered ones."""
    entry = METHODS.get(name.removeprefix("method/").removesuffix(".yaml"))
    if entry is None:
        raise ConfigError(
            f"method {name!r} is not registered: choose one of {', '.join(sorted(METHODS))}"
        )
    return entry


# A recipe file of the user's own, not registered, gets the family of its first callback named
# in CALLBACK_FAMILIES (recipe order); failing that, of its first one in FALLBACK_FAMILIES (m ⊙ w
# trained and pruned when training ends, as spred and the switch-off, is continuous; a prune at
# the end alone is dense-to-sparse); ``reference`` if none and no callback takes a target.
CALLBACK_FAMILIES = {
    "PruneAtInit": "PaI",
    "RiGL": "DST",
    "MagnitudePruning": "dense-to-sparse",
    "ACDC": "dense-to-sparse",
    "PILoT": "continuous",
    "ContinuousSparsification": "continuous",
    "SoftThresholdReparametrization": "continuous",
    "L1Penalty": "continuous",
}
FALLBACK_FAMILIES = {"Reparametrize": "continuous", "PruneAtEnd": "dense-to-sparse"}


def family_of(families: list[str]) -> str:
    """The family of recipes composed in order: that of the first one that prunes."""
    return next((family for family in families if family != "reference"), "reference")
