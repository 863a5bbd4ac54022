"""RiGL (sparse-to-sparse) and AC/DC (alternating dense / compressed), alone and with Sign-In."""

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

import sparsify.configs
from helpers import UserModule, blobs, trainer
from sparsify import ConfigError
from sparsify.callbacks import ACDC, RiGL, SignIn
from sparsify.dst import acdc_phase, rigl_fraction, rigl_masks
from sparsify.lightning.module import ImageClassifier, lr_scheduler
from sparsify.masks import sparsity_report
from sparsify.reparam import layer_masks

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(sparsify.configs.__file__).parent


def data():
    return DataLoader(TensorDataset(*blobs()), batch_size=16, shuffle=True), None


class RecordMasks(L.Callback):
    """Listed after the method: the masks and effective weights after every step."""

    def __init__(self):
        self.masks, self.weights, self.epoch_sparsity, self.epoch_weights = [], [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.masks.append({k: v.clone() for k, v in layer_masks(pl_module).items()})
        self.weights.append(
            {k: pl_module.get_submodule(k).weight.detach().clone() for k in layer_masks(pl_module)}
        )

    def on_train_epoch_start(self, trainer, pl_module):
        live = layer_masks(pl_module)
        kept = sum(int(m.sum()) for m in live.values())
        self.epoch_sparsity.append(1 - kept / sum(m.numel() for m in live.values()))
        self.epoch_weights.append(
            {k: pl_module.get_submodule(k).weight.detach().clone() for k in live}
        )


def test_rigl_drops_the_smallest_weights_and_grows_the_largest_gradients():
    weights = {"a": torch.tensor([0.1, -3.0, 2.0, 0.0, 0.0, 0.0])}
    grads = {"a": torch.tensor([0.5, 0.0, 0.0, -5.0, 1.0, 4.0])}
    current = {"a": torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])}
    new = rigl_masks(weights, grads, current, fraction=0.5)  # floor(0.5 · 3) = 1 update
    assert new["a"].tolist() == [0, 1, 1, 1, 0, 0]  # 0.1 dropped, |−5| grown
    new = rigl_masks(weights, grads, current, fraction=1.0)  # all 3 kept dropped
    assert new["a"].tolist() == [0, 0, 0, 1, 1, 1]
    grads["a"][0] = 9.0  # a dropped weight with the largest gradient comes back
    assert rigl_masks(weights, grads, current, 0.5)["a"].tolist() == [1, 1, 1, 0, 0, 0]


def reference_rigl_update(mask, weight, grad, drop_fraction, noise):
    """One RiGL mask update as google-research/rigl does it (rigl/sparse_optimizers_base.py,
    ``SparseRigLOptimizerBase.generic_mask_update`` and ``_get_update_op``), in our words: the
    drop score is |mask ⊙ w| plus the noise; the n_keep = n_on − int(n_on · drop_fraction)
    best scores of the whole tensor stay on; the grow score is |g|, with the entries that stayed
    on lifted to min(|g|) − 1, and its int(n_on · drop_fraction) best are switched on."""
    mask, score = mask.flatten(), (mask * weight).abs().flatten() + noise.flatten()
    n_on = int(mask.sum())
    n_prune = int(n_on * drop_fraction)
    stay = torch.zeros_like(mask)
    stay[torch.argsort(score, descending=True, stable=True)[: n_on - n_prune]] = 1
    grow_score = grad.abs().flatten()
    grow_score = torch.where(stay == 1, grow_score.min() - 1, grow_score)
    grown = torch.zeros_like(mask)
    grown[torch.argsort(grow_score, descending=True, stable=True)[:n_prune]] = 1
    return (stay + grown).view_as(weight)


def test_rigl_update_matches_the_reference_and_breaks_ties_at_random():
    """Conformance with google-research/rigl (rigl/sparse_optimizers_base.py): same masks from
    the same noise, on a layer whose kept weights tie in magnitude (±0.5 and ±1)."""
    torch.manual_seed(0)
    weight = torch.tensor([0.5, -0.5, 1.0, 0.5, -1.0, 0.5, -0.5, 1.0] * 4).view(4, 8)
    mask = (torch.rand(4, 8) < 0.6).float()
    grad = torch.randn(4, 8)  # distinct: no ties in the grow score
    chosen = []
    for seed in range(4):
        noise = 1e-5 * torch.randn(32, generator=torch.Generator().manual_seed(seed))
        ours = rigl_masks(
            {"a": weight}, {"a": grad}, {"a": mask}, 0.3, 1e-5, torch.Generator().manual_seed(seed)
        )["a"]
        assert torch.equal(ours, reference_rigl_update(mask, weight, grad, 0.3, noise.view(4, 8)))
        chosen.append(ours)
    # floor(0.3 · kept) of the tied ±0.5 weights are dropped: which ones depends on the noise.
    assert any(not torch.equal(chosen[0], other) for other in chosen[1:])


def test_rigl_imagenet_recipe_leaves_the_first_convolution_dense():
    """google-research/rigl, rigl/imagenet_resnet/imagenet_train_eval.py: first_layer_sparsity
    0 means the first layer "is not pruned or masked"."""
    config = yaml.safe_load((CONFIGS / "method" / "rigl_imagenet.yaml").read_text())
    rigl = RiGL(**config["trainer"]["callbacks"][0]["init_args"])
    module = ImageClassifier(backbone="resnet18_cifar", num_classes=10)
    rigl.setup(None, module, "fit")
    initial = rigl.initial_masks(module)
    assert "model.conv1" not in initial and "model.conv1" not in layer_masks(module)
    kept = sum(int(m.sum()) for m in initial.values())
    assert kept / sum(m.numel() for m in initial.values()) == pytest.approx(0.1, abs=1e-3)


def test_rigl_update_fraction_decays_by_a_cosine():
    assert rigl_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert rigl_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert rigl_fraction(100, 0.3, 100) == 0.0


class RecordStart(L.Callback):
    """Listed after the method: the masks and the effective weights when training starts."""

    def on_train_start(self, trainer, pl_module):
        live = layer_masks(pl_module)
        self.masks = {k: v.clone() for k, v in live.items()}
        self.weights = {k: pl_module.get_submodule(k).weight.detach().clone() for k in live}


@pytest.mark.parametrize("with_sign_in", [False, True])
def test_rigl_keeps_every_layer_sparsity_and_grown_weights_start_at_zero(tmp_path, with_sign_in):
    record, start = RecordMasks(), RecordStart()
    rigl = RiGL(sparsity=0.8, every_n_steps=3, update_fraction=0.5, end=1.0)
    callbacks = ([SignIn()] if with_sign_in else []) + [rigl, record, start]
    L.seed_everything(0)
    run = trainer(tmp_path, callbacks, max_epochs=3)  # 6 steps an epoch, updates at 0, 3 … 15
    module = UserModule(lr=0.2)
    run.fit(module, *data())
    masks, weights = [start.masks, *record.masks], [start.weights, *record.weights]
    counts = [{k: int(m.sum()) for k, m in step.items()} for step in masks]
    assert all(c == counts[0] for c in counts)
    assert sum(counts[0].values()) == round(0.2 * (8 * 32 + 32 * 3))
    changed = [
        t
        for t in range(len(record.masks))  # the mask after step t against the one before it
        if any(not torch.equal(masks[t + 1][k], masks[t][k]) for k in counts[0])
    ]
    assert changed == [0, 3, 6, 9, 12, 15]  # the first update before any optimizer step
    for t in changed:
        for k, mask in masks[t + 1].items():
            grown = (mask == 1) & (masks[t][k] == 0)
            kept = (mask == 1) & (masks[t][k] == 1)
            assert torch.all(weights[t + 1][k][grown] == 0)
            assert torch.all(weights[t + 1][k][mask == 0] == 0)
            # The update replaced the optimizer step: the weights it kept did not move.
            assert torch.equal(weights[t + 1][k][kept], weights[t][k][kept])
    assert "rigl/update_fraction" in run.callback_metrics


def reference_rigl_training(net, masks, batches, interval, end_step, fraction, lr):
    """google-research/rigl's training loop in our words (rigl/sparse_optimizers_base.py:
    ``SparseRigLOptimizerBase.apply_gradients`` conditions on ``is_mask_update_iter`` and runs
    either the mask update or the wrapped optimizer's update; ``last_mask_update_step`` starts
    at −frequency, so step 0 updates): at step t, the gradient of the batch with respect to
    the masked weights θ = mask ⊙ w; if t is a multiple of the frequency before the end step,
    drop and grow with it (``reference_rigl_update``, cosine-decayed fraction; grown weights and
    their momentum set to 0) and apply no gradient; otherwise an SGD step on w. Here every
    batch counts as a step, as in the Lightning run it is compared with."""
    weights = {name: net.get_submodule(name).weight for name in masks}
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    for t, (x, y) in enumerate(batches):
        thetas = {name: weights[name] * masks[name] for name in masks}
        masked = {f"{name}.weight": theta for name, theta in thetas.items()}
        loss = torch.nn.functional.cross_entropy(functional_call(net, masked, (x,)), y)
        optimizer.zero_grad()
        if t % interval == 0 and t < end_step:
            grads = torch.autograd.grad(loss, list(thetas.values()))
            f = rigl_fraction(t, fraction, end_step)
            with torch.no_grad():
                for (name, mask), grad in zip(list(masks.items()), grads):
                    new = reference_rigl_update(mask, weights[name], grad, f, torch.zeros(1))
                    grown = (new == 1) & (mask == 0)
                    weights[name][grown] = 0
                    buffer = optimizer.state.get(weights[name], {}).get("momentum_buffer")
                    if buffer is not None:
                        buffer[grown] = 0
                    masks[name] = new
            continue
        loss.backward()
        optimizer.step()
    return masks, {name: (weights[name] * masks[name]).detach() for name in masks}


def test_rigl_training_matches_the_reference_loop(tmp_path):
    """The whole run against ``reference_rigl_training``: the same masks after every update,
    the same weights at the end (no drop noise, so the two choose alike)."""
    x, y = blobs()
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, len(x), 16)]
    start = RecordStart()
    rigl = RiGL(sparsity=0.7, every_n_steps=4, update_fraction=0.4, end=0.75, drop_noise=0.0)
    L.seed_everything(0)
    module = UserModule(lr=0.1, weight_decay=0.0)
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    trainer(tmp_path, [rigl, start], max_epochs=3).fit(module, loader)  # 18 steps
    net = UserModule().net
    net.load_state_dict({k[len("net.") :]: v for k, v in initial.items()})
    masks = {k[len("net.") :]: m for k, m in start.masks.items()}
    ref_masks, ref_theta = reference_rigl_training(
        net, masks, batches * 3, interval=4, end_step=0.75 * 18, fraction=0.4, lr=0.1
    )
    for name, mask in ref_masks.items():
        assert torch.equal(layer_masks(module)[f"net.{name}"], mask)
        theta = module.get_submodule(f"net.{name}").weight.detach()
        torch.testing.assert_close(theta, ref_theta[name], rtol=1e-5, atol=1e-6)


def test_acdc_alternates_and_ends_compressed_at_its_target(tmp_path):
    assert [acdc_phase(e, 7, 1, 2, 2) for e in range(7)] == [
        "dense",
        "compressed",
        "compressed",
        "dense",
        "dense",
        "compressed",
        "compressed",
    ]
    record = RecordMasks()
    acdc = ACDC(sparsity=0.75, warmup=1, length=1, final=2, last_dense=1, unit="epoch")
    L.seed_everything(0)
    run = trainer(tmp_path, [acdc, record], max_epochs=6)
    module = UserModule(lr=0.2)
    run.fit(module, *data())
    target = round(0.25 * (8 * 32 + 32 * 3)) / (8 * 32 + 32 * 3)
    expected = [0.0, 1 - target, 0.0, 0.0, 1 - target, 1 - target]
    assert record.epoch_sparsity == pytest.approx(expected, abs=1e-9)  # at each epoch start
    assert sparsity_report(module)["global"] == pytest.approx(1 - target)
    for k, mask in layer_masks(module).items():
        assert torch.all(module.get_submodule(k).weight[mask == 0] == 0)
    # Epoch 2 is dense again: the weights masked in epoch 1 restart from exactly 0.
    last_compressed = record.masks[2 * 6 - 1]
    for k, mask in last_compressed.items():
        assert torch.all(record.epoch_weights[2][k][mask == 0] == 0)
        assert torch.any(record.weights[-1][k] != 0)


def test_acdc_names_a_layer_its_global_threshold_empties(tmp_path):
    """A global threshold can take every weight of a layer whose weights are small (on ResNet-20
    at 98 % it emptied the classifier: docs/results.md); each compression names such a layer.
    The default layer floor keeps 0.2 · (1 − s) of it."""
    module = UserModule(lr=1e-6)
    with torch.no_grad():
        module.net[2].weight.mul_(1e-4)  # 96 weights far below the first layer's 256
    initial = copy.deepcopy(module.state_dict())
    phases = {"warmup": 1, "length": 1, "final": 2, "last_dense": 1, "unit": "epoch"}
    acdc = ACDC(sparsity=0.85, layer_floor=0, **phases)
    with pytest.warns(UserWarning, match=r"ACDC: layers above 99% sparsity: net\.2 \(100\.00%\)"):
        trainer(tmp_path, [acdc], max_epochs=6).fit(module, *data())
    assert sparsity_report(module)["layers"]["net.2"] == 1.0

    floored = UserModule(lr=1e-6)
    floored.load_state_dict(initial)
    trainer(tmp_path, [ACDC(sparsity=0.85, **phases)], max_epochs=6).fit(floored, *data())
    kept = 1 - sparsity_report(floored)["layers"]["net.2"]
    assert kept == pytest.approx(round(0.2 * 0.15 * 96) / 96)


def reference_acdc_phases(pruners, recyclers, epochs: int) -> list[str]:
    """The phase of every epoch as IST-DASLab/ACDC's policies/manager.py schedules it: a pruner
    compresses at every epoch of range(start, end, freq) of its ``epochs: [start, freq, end]``,
    a recycler decompresses likewise (not where a pruner acts), and an epoch is in the phase of
    the last event at or before it (dense before any)."""
    events = {e: "compressed" for start, freq, end in pruners for e in range(start, end, freq)}
    for start, freq, end in recyclers:
        events.update({e: "dense" for e in range(start, end, freq) if e not in events})
    reference, phase = [], "dense"
    for epoch in range(epochs):
        phase = events.get(epoch, phase)
        reference.append(phase)
    return reference


def test_acdc_schedule_is_the_reference_imagenet_schedule():
    """Conformance with IST-DASLab/ACDC,
    configs/neurips/iht_imagenet_resnet50_insta_cosinelr_s90_ep100.yaml (100 epochs)."""
    reference = reference_acdc_phases(
        [(10, 10, 71), (85, 20, 100)], [(15, 10, 66), (75, 20, 86)], 100
    )
    ours = [acdc_phase(e, 100, *ACDC().epochs(100)) for e in range(100)]
    assert ours == reference
    assert reference[75:85] == ["dense"] * 10 and reference[85:] == ["compressed"] * 15


def test_acdc_cifar_recipe_is_the_reference_cifar10_resnet20_schedule():
    """Conformance with IST-DASLab/ACDC,
    configs/neurips/iht_cifar10_resnet20_unstructured_insta_prune_freq20_90_constant.yaml run for
    200 epochs (run_cifar10_randomlabels_iht_no_da.sh): pruner epochs [10, 40, 171], recycler
    epochs [30, 40, 151]; its learning rate 0.1 times 0.1 for each of the epochs 65, 125 and 185
    that has ended (policies/trainers.py steps ``ExponentialLR(gamma=0.1)`` at the end of every
    epoch of its ``epochs: [65, 60, 200]``)."""
    config = yaml.safe_load((CONFIGS / "method" / "acdc_cifar.yaml").read_text())
    epochs = config["trainer"]["max_epochs"]
    assert epochs == 200
    acdc = ACDC(**config["trainer"]["callbacks"][0]["init_args"])
    ours = [acdc_phase(e, epochs, *acdc.epochs(epochs)) for e in range(epochs)]
    assert ours == reference_acdc_phases([(10, 40, 171)], [(30, 40, 151)], epochs)
    assert ours[:10] == ["dense"] * 10 and ours[170:] == ["compressed"] * 30

    model = config["model"]["init_args"]
    steps_per_epoch = 196  # 50,000 images in batches of 256
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=model["lr"])
    schedule = lr_scheduler(
        optimizer,
        model["scheduler"],
        epochs * steps_per_epoch,
        0,
        model["milestones"],
        model["gamma"],
    )
    ours, reference = [], []
    for epoch in range(epochs):
        ours.append(optimizer.param_groups[0]["lr"])
        reference.append(0.1 * 0.1 ** sum(epoch > drop for drop in range(65, 201, 60)))
        for _ in range(steps_per_epoch):
            optimizer.step()
            schedule.step()
    assert ours == pytest.approx(reference, rel=1e-9)
    assert model["weight_decay"] == 5e-4 and model["momentum"] == 0.9


class RecordMomentum(L.Callback):
    """Listed after ACDC: whether every momentum buffer is zero at each epoch start."""

    def __init__(self):
        self.all_zero = []

    def on_train_epoch_start(self, trainer, pl_module):
        buffers = [s["momentum_buffer"] for s in trainer.optimizers[0].state.values() if s]
        self.all_zero.append(bool(buffers) and all(torch.all(b == 0) for b in buffers))


@pytest.mark.parametrize("reset", [True, False])
def test_acdc_zeroes_every_momentum_buffer_at_each_decompression(reset, tmp_path):
    """The reference runs pass --reset_momentum_after_recycling (IST-DASLab/ACDC, e.g.
    run_imagenet_iht_oneshot_cosinelr_s90_ep100.sh): before the first step after a
    decompression, every SGD momentum buffer is multiplied by 0 (optimization/sgd.py)."""
    acdc = ACDC(
        sparsity=0.75, warmup=1, length=1, final=1, last_dense=0, unit="epoch", reset_momentum=reset
    )
    record = RecordMomentum()
    L.seed_everything(0)
    trainer(tmp_path, [acdc, record], max_epochs=4).fit(UserModule(lr=0.2), *data())
    # Epochs: 0 dense, 1 compressed, 2 dense (decompression), 3 compressed.
    assert record.all_zero == [False, False, reset, False]


def test_acdc_with_sign_in_ends_at_its_target_with_masked_weights_zero(tmp_path):
    L.seed_everything(0)
    run = trainer(
        tmp_path,
        [SignIn(), ACDC(sparsity=0.75, warmup=1, length=1, final=1, unit="epoch")],
        max_epochs=4,
    )
    module = UserModule(lr=0.2)
    run.fit(module, *data())
    assert sparsity_report(module)["global"] == pytest.approx(0.75, abs=0.01)
    assert run.callback_metrics["acdc/phase"] == 1.0
    for k, mask in layer_masks(module).items():
        assert torch.all(module.get_submodule(k).weight[mask == 0] == 0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: RiGL(update_fraction=0), "update_fraction=0 is invalid"),
        (lambda: RiGL(every_n_steps=0), "every_n_steps=0 is invalid"),
        (lambda: RiGL(distribution="nope"), "distribution='nope' is invalid"),
        (lambda: ACDC(length=0), "length=0 is invalid"),
        (lambda: ACDC(last_dense=-1), "last_dense=-1 is invalid"),
        (lambda: ACDC(unit="step"), "unit='step' is invalid"),
        (lambda: ACDC(sparsity=1.0), "sparsity=1.0 is invalid"),
    ],
)
def test_bad_rigl_and_acdc_arguments_are_refused(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
