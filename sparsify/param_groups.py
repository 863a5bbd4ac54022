"""Give the reparametrized m, w their own param group in every optimizer, so that a callback can
set their weight decay (PILoT's α_t, a weight-decay schedule) and nothing else's.

The user's ``configure_optimizers`` may put m, w in one group with other parameters (a single
``SGD(self.parameters())``, say). ``split_groups`` moves them out of each such group into a
new group appended at the end that copies the source group's hyperparameters (lr, momentum,
weight decay, ``initial_lr`` ...), so nothing changes until a callback changes that group.

A rule calls it (through ``isolate``) in its ``attach`` event, once the optimizer exists, under
Lightning and the Hugging Face ``Trainer`` alike. Optimizer state (momentum buffers, Adam
moments) is keyed by the parameter, so it moves with m, w. The learning-rate schedulers of the
optimizer get one more entry in each of their per-group lists (``base_lrs``, ``lr_lambdas``,
``_last_lr`` ...), a copy of the source group's, so the learning-rate schedule applies to the new
group as before.
Idempotent: a second call finds no mixed group and changes nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.reparam import pointwise_factors

GROUP_NAME = "pointwise"

# The attributes of torch's learning-rate schedulers that hold one entry per param group.
PER_GROUP_ATTRIBUTES = ("base_lrs", "_last_lr", "lr_lambdas", "min_lrs", "max_lrs")


def pointwise_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The m and w of every reparametrized weight of ``module``."""
    return [p for _, m, w in pointwise_factors(module) for p in (m, w)]


def pointwise_groups(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> list[dict]:
    """The param groups of ``optimizer`` that hold only parameters from ``params`` (non-empty)."""
    ids = {id(p) for p in params}
    return [
        g for g in optimizer.param_groups if g["params"] and all(id(p) in ids for p in g["params"])
    ]


def split_groups(
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    schedulers: list = (),
    group_name: str = GROUP_NAME,
) -> None:
    """Move ``params`` out of each group that also holds other parameters into a new group with
    the same hyperparameters, named ``group_name`` (or ``"<name>.<group_name>"``); extend the
    per-group lists of ``schedulers`` to match."""
    ids = {id(p) for p in params}
    for index, group in enumerate(list(optimizer.param_groups)):
        moved = [p for p in group["params"] if id(p) in ids]
        kept = [p for p in group["params"] if id(p) not in ids]
        if not moved or not kept:
            continue
        group["params"] = kept
        new_group = {key: value for key, value in group.items() if key != "params"}
        name = group.get("name")
        new_group["name"] = group_name if name is None else f"{name}.{group_name}"
        new_group["params"] = moved
        optimizer.add_param_group(new_group)
        for scheduler in schedulers:
            _append_group(scheduler, index)


def drives(scheduler, optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``scheduler`` sets the learning rates of ``optimizer``'s groups: it was built on
    ``optimizer`` or on the optimizer that ``optimizer`` wraps and shares its groups with
    (``sparsify.optim.HAM``, installed after the schedulers were built)."""
    target = getattr(scheduler, "optimizer", None)
    return target is not None and target.param_groups is optimizer.param_groups


def _append_group(scheduler, index: int) -> None:
    """Copy entry ``index`` of each per-group list of ``scheduler`` (and of the schedulers it
    chains, as ``SequentialLR`` and ``ChainedScheduler`` do) to the end of that list."""
    for child in getattr(scheduler, "_schedulers", ()):
        _append_group(child, index)
    for attribute in PER_GROUP_ATTRIBUTES:
        values = getattr(scheduler, attribute, None)
        if isinstance(values, list) and index < len(values):
            values.append(values[index])


# Adaptive optimizers whose weight decay is coupled: added to the gradient, then divided by the
# running second-moment estimate, so it is not the proportional shrinkage the methods assume.
COUPLED_ADAPTIVE = (
    torch.optim.Adam,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.Adagrad,
    torch.optim.RMSprop,
)


def isolate(
    optimizers: list[torch.optim.Optimizer],
    schedulers: list,
    params: list[nn.Parameter],
    group_name: str = GROUP_NAME,
) -> list[dict]:
    """``split_groups`` in every optimizer (each with the schedulers that drive it); return the
    groups, over all optimizers, that hold only ``params``."""
    groups = []
    for optimizer in optimizers:
        split_groups(optimizer, params, [s for s in schedulers if drives(s, optimizer)], group_name)
        groups += pointwise_groups(optimizer, params)
    return groups


def coupled_decay_warning(optimizers: list[torch.optim.Optimizer], who: str) -> str | None:
    """The warning to give when ``who`` sets the weight decay of an optimizer whose decay is
    coupled to its adaptive rescaling, or ``None``."""
    for optimizer in optimizers:
        decoupled = any(g.get("decoupled_weight_decay") for g in optimizer.param_groups)
        if isinstance(optimizer, COUPLED_ADAPTIVE) and not decoupled:
            return (
                f"{who} sets the weight decay of {type(optimizer).__name__}, which adds it to the "
                "gradient before the adaptive rescaling (coupled): the shrinkage is then not "
                "proportional to the weight. Use AdamW (decoupled) and scale the decay by the "
                "learning-rate ratio (docs/integration.md, 'Adam and AdamW')"
            )
    return None
