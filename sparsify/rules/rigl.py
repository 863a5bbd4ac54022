"""RiGL: sparse-to-sparse training that drops small weights and grows large gradients."""

from __future__ import annotations

import torch
from torch import nn

from sparsify.dst import restart_, rigl_fraction, rigl_masks
from sparsify.errors import ConfigError
from sparsify.masks import (
    Distribution,
    check_distribution,
    check_pattern,
    check_sparsity,
    layer_densities,
    pattern_keywords,
    select_mask,
    set_masks,
)
from sparsify.reparam import add_masks, layer_masks, prunable_layers, weight_parametrization
from sparsify.rules.base import LayerRule, Run


class RiGL(LayerRule):
    """RiGL ("Rigging the Lottery: Making All Tickets Winners", Evci et al., ICML 2020;
    google-research/rigl; docs/pai.md, "AC/DC and RiGL").

    Training starts from a random mask with ``distribution`` layer densities (ERK by default,
    ``sparsify.masks.layer_densities``; ``dense_layers`` kept whole) at ``sparsity``. Every
    ``every_n_steps`` optimizer steps until ``end`` (a fraction of all steps), each layer drops its
    k smallest |θ| and grows the k weights outside the mask with the largest |∂L/∂θ|, k = f_t ·
    (kept weights), f_t = ``update_fraction`` · (1 + cos(π t / T_end)) / 2. The sparsity of every
    layer stays constant; grown weights start at 0 with cleared optimizer state. Ties in the drop
    score are broken as in the reference (google-research/rigl): the score is |θ| plus Gaussian
    noise of standard deviation ``drop_noise`` (1e-5; 0 turns it off), drawn from a generator seeded
    with the update step, so every DDP rank and a resumed run draw the same noise.

    ∂L/∂θ is the dense gradient of the effective weight on the batch of the update step (taken
    from the backward pass of that step, so no extra forward), averaged over DDP ranks before
    choosing. As in the reference
    (``SparseRigLOptimizerBase.apply_gradients`` in rigl/sparse_optimizers_base.py runs the
    mask update *or* the optimizer update), the mask update replaces that step's optimizer
    update: it runs after the backward pass, before the optimizer step, on the weights the
    batch saw, and then clears every gradient of the optimizers, so no parameter moves in that
    step (momentum and weight decay included). Updates are at the steps t = 0, ΔT, 2ΔT, … (t
    counts the optimizer steps before the batch), the first before any training, as the
    reference's last update step starts at −ΔT. One difference: the reference's global step
    does not advance on an update step (its run has one more batch per update); here the update
    step is a step of training, so the learning-rate schedule moves on and a run has one
    optimizer update fewer per mask update. The initial mask is drawn on rank 0 and broadcast,
    so every rank trains the same mask.
    ``every_n_steps=None`` (default) derives ΔT from the run: the reference's 100 steps, or
    fewer so that at least ``MIN_UPDATES`` updates happen before ``end`` in a short run
    (``update_interval``). ``f_t`` is logged as ``rigl/update_fraction`` at each update. The
    masks are model buffers and ``started`` is in the ``state_dict``: a resumed run keeps its
    mask and updates at the same steps. Combine with ``SignIn`` for RiGL + Sign-In.

    ``pattern="n:m"`` (e.g. ``"2:4"``): the initial random mask keeps at most n of every m
    weights along each layer's input dimension (a layer density above n/m gives n/m), and a
    weight grows only where its group keeps fewer than n after the drop, so every mask stays
    N:M (``sparsify.masks.select_mask``).

    Args:
        sparsity: the sparsity of the random initial mask, kept by every update.
        distribution: the layer densities: ``"erk"`` (default), ``"uniform"`` or ``"global"``.
        dense_layers: layers kept whole, counted in the target (patterns, ``"first"``,
            ``"last"``).
        update_fraction: f₀, the fraction of each layer's kept weights exchanged at the first
            update (the reference: 0.3), decaying by a cosine.
        every_n_steps: ΔT, optimizer steps between mask updates; ``None``: the reference's 100,
            or fewer in a short run.
        end: the fraction of all steps after which the mask stays fixed (0.75).
        drop_noise: the standard deviation of the noise that breaks ties in the drop score.
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        pattern: ``"unstructured"`` or ``"n:m"`` (e.g. ``"2:4"``).
    """

    state_fields = ("started",)

    def __init__(
        self,
        sparsity: float = 0.9,
        distribution: Distribution = "erk",
        dense_layers: list | None = None,
        update_fraction: float = 0.3,
        every_n_steps: int | None = None,
        end: float = 0.75,
        drop_noise: float = 1e-5,
        include: list | None = None,
        exclude: list | None = None,
        pattern: str = "unstructured",
    ):
        self.sparsity = check_sparsity(sparsity)
        self.pattern = check_pattern(pattern)  # parsed once: NMPattern, or None
        self.distribution = check_distribution(distribution)
        if not 0 < update_fraction <= 1:
            raise ConfigError(f"update_fraction={update_fraction!r} is invalid: must be in (0, 1]")
        if not (every_n_steps is None or (isinstance(every_n_steps, int) and every_n_steps >= 1)):
            raise ConfigError(
                f"every_n_steps={every_n_steps!r} is invalid: an integer >= 1, or None"
            )
        if not 0 < end <= 1:
            raise ConfigError(f"end={end!r} is invalid: a fraction of training in (0, 1]")
        if not drop_noise >= 0:
            raise ConfigError(f"drop_noise={drop_noise!r} is invalid: must be >= 0")
        self.dense_layers, self.drop_noise = dense_layers, float(drop_noise)
        # ``end`` is kept as ``end_fraction``: ``end`` is the rule's event of the end of training.
        self.update_fraction, self.every_n_steps = update_fraction, every_n_steps
        self.end_fraction = end
        self.include, self.exclude = include, exclude
        self.started = False
        self.pending_step: int | None = None
        self.grads: dict[str, torch.Tensor] = {}
        self.hooks: list = []

    def prepare(self, model: nn.Module) -> None:
        add_masks(model, self.layers(model))

    def start(self, run: Run) -> None:
        if not self.started:
            # Drawn on every process without touching its random state; rank 0's is kept.
            set_masks(run.model, run.broadcast(self.initial_masks(run.model)))
            self.started = True
        for name, layer in prunable_layers(run.model, self.layers(run.model)):
            parametrization = weight_parametrization(layer)
            self.hooks.append(parametrization.register_forward_hook(self.gradient_hook(name)))

    def initial_masks(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A random mask with the layer densities, drawn without touching the run's RNG."""
        densities = layer_densities(
            model,
            self.sparsity,
            self.distribution,
            self.dense_layers,
            self.layers(model),
        )
        layers = dict(prunable_layers(model, self.layers(model)))
        with torch.random.fork_rng(devices=[]):
            scores = {name: torch.rand(layer.weight.shape) for name, layer in layers.items()}
        self.info(f"RiGL: random {self.distribution} mask at sparsity {self.sparsity}")
        theta = {name: layer.weight for name, layer in layers.items()}
        structure = pattern_keywords(model, self.pattern, self.layers(model))
        return select_mask(scores, theta, densities=densities, **structure)

    def gradient_hook(self, name: str):
        """A forward hook on the layer's parametrization that records ∂L/∂θ when armed."""

        def record(grad: torch.Tensor) -> None:
            self.grads[name] = self.grads.get(name, 0) + grad.detach()

        def hook(module, inputs, theta: torch.Tensor) -> None:
            if self.pending_step is not None and theta.requires_grad:
                theta.register_hook(record)

        return hook

    def is_update_step(self, step: int, total_steps: int) -> bool:
        """Whether the step after ``step`` optimizer steps updates the mask: t = 0, ΔT, 2ΔT, …
        while t < ``end`` · total steps."""
        interval = self.every_n_steps or update_interval(total_steps, self.end_fraction)
        return step % interval == 0 and step < self.end_fraction * total_steps

    def before_step(self, run: Run) -> None:
        step = run.progress.step
        if self.pending_step != step and self.is_update_step(step, run.progress.total_steps):
            self.pending_step, self.grads = step, {}

    def before_optimizer_step(self, run: Run) -> dict[str, float] | None:
        if self.pending_step is None:
            return None
        fraction = self.update(run, self.pending_step)
        self.pending_step, self.grads = None, {}
        # The mask update is this step's update: the optimizer step that follows moves nothing
        # (optimizers skip a parameter without a gradient: no momentum, no weight decay).
        for each in run.optimizers:
            each.zero_grad(set_to_none=True)
        return {"rigl/update_fraction": fraction}

    @torch.no_grad()
    def update(self, run: Run, step: int) -> float:
        """Drop and grow with the recorded gradients, the same on every rank; f_t."""
        model = run.model
        layers = dict(prunable_layers(model, self.layers(model)))
        if set(self.grads) != set(layers):
            raise RuntimeError(
                f"RiGL recorded no gradient for {sorted(set(layers) - set(self.grads))}"
            )
        flat = torch.cat([self.grads[name].flatten() for name in layers])
        flat = run.mean_tensor(flat)
        grads = dict(zip(layers, flat.split([layer.weight.numel() for layer in layers.values()])))
        grads = {name: g.view_as(layers[name].weight) for name, g in grads.items()}
        live = layer_masks(model)
        current = {name: live[name].clone() for name in layers}
        total = run.progress.total_steps
        fraction = rigl_fraction(step, self.update_fraction, self.end_fraction * total)
        weights = {name: layer.weight for name, layer in layers.items()}
        noise = torch.Generator().manual_seed(step)
        structure = pattern_keywords(model, self.pattern, self.layers(model))
        new = rigl_masks(weights, grads, current, fraction, self.drop_noise, noise, **structure)
        grown = {name: (new[name] != 0) & (current[name] == 0) for name in layers}
        restart_(model, grown, run.optimizers)
        set_masks(model, new)
        return fraction

    def end(self, run: Run) -> None:
        for handle in self.hooks:
            handle.remove()
        self.hooks = []


MIN_UPDATES = 20
REFERENCE_INTERVAL = 100  # ΔT of google-research/rigl's ImageNet configs


def update_interval(total_steps: int, end: float) -> int:
    """ΔT: 100 steps, or fewer so that at least ``MIN_UPDATES`` updates fit before ``end``."""
    return max(1, min(REFERENCE_INTERVAL, int(end * total_steps) // MIN_UPDATES))
