"""Each method's Lightning callback and Hugging Face ``TrainerCallback`` are adapters of one
rule (``sparsify.rules``): the same arguments on the same batches give the same training."""

import pytest
from frameworks import (
    LightningDecay,
    Net,
    TrainerDecay,
    assert_same_weights,
    train_hf,
    train_lightning,
)

from sparsify import callbacks, hf, reparametrize

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("target", [None, "pointwise"])
def test_weight_decay_switch_off(tmp_path, target):
    nets = Net(), Net()
    if target:
        for net in nets:
            reparametrize(net, beta=1.0)
    lightning, trainer = LightningDecay(), TrainerDecay()
    options = {"at": 0.5, "target": target}
    train_lightning(nets[0], [callbacks.WeightDecaySwitchOff(**options), lightning], 2, tmp_path)
    train_hf(nets[1], [hf.WeightDecaySwitchOff(**options), trainer], 2, tmp_path)
    assert lightning.decay == trainer.decay
    assert lightning.decay[3][0] > 0 and lightning.decay[4][0] == 0  # off from step 4 of 8
    assert_same_weights(*nets)
