"""The Lightning callback and the Hugging Face twin of each method on θ = m ⊙ w (Reparametrize,
Sign-In, PILoT, the L1 penalties, the HAM step) are adapters of one rule (``sparsify.rules``):
the same arguments on the same batches give the same training."""

import pytest
import torch

pytest.importorskip("transformers")

from frameworks import (  # noqa: E402
    Net,
    train_hf,
    train_lightning,
)

from sparsify import callbacks, hf  # noqa: E402
from sparsify.reparam import pointwise_factors  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    one, other = a.state_dict(), b.state_dict()
    assert list(one) == list(other)
    for name in one:
        torch.testing.assert_close(one[name], other[name], rtol=1e-5, atol=1e-6, msg=name)


def test_reparametrize(tmp_path):
    nets = Net(), Net()
    untouched = Net()
    options = {"beta": 0.5, "exclude": ["*fc2"]}
    train_lightning(nets[0], [callbacks.Reparametrize(**options)], 2, tmp_path)
    train_hf(nets[1], [hf.Reparametrize(**options)], 2, tmp_path)
    for net in nets:
        assert [name for name, _, _ in pointwise_factors(net)] == ["fc1.weight"]
    assert_same_weights(*nets)
    assert not torch.allclose(nets[0].fc1.weight, untouched.fc1.weight)  # it trained
