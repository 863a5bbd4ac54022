"""Callbacks' state keys, built by ``argument_key``, are the keys their checkpoints were written
under before: a checkpoint keeps restoring into the callback that wrote it."""

import pytest

from sparsify.callbacks import ACDC, MagnitudePruning, PILoT, PruneAtEnd, PruneAtInit, RiGL, SignIn

KEYS = [
    (ACDC(0.8, include=["a"]), "ACDC{'sparsity': 0.8, 'include': ['a'], 'exclude': None}"),
    (
        MagnitudePruning(pattern="2:4"),
        "MagnitudePruning{'final_sparsity': 0.9, 'include': None, 'exclude': None, "
        "'pattern': '2:4'}",
    ),
    (PILoT(), "PILoT{'alpha_init': 0.001, 'adaptive': True, 'monitor': None}"),
    (
        PruneAtEnd(0.9),
        "PruneAtEnd{'sparsity': 0.9, 'scope': 'global', 'include': None, 'exclude': None}",
    ),
    (
        PruneAtInit(0.9, pattern="2:4"),
        "PruneAtInit{'score': 'random', 'sparsity': 0.9, 'distribution': 'global', "
        "'pattern': '2:4'}",
    ),
    (RiGL(0.9), "RiGL{'sparsity': 0.9, 'include': None, 'exclude': None}"),
    (SignIn(), "SignIn{'include': None, 'exclude': None}"),
]


@pytest.mark.parametrize("callback, key", KEYS, ids=lambda value: type(value).__name__)
def test_state_keys_stay_those_checkpoints_were_written_under(callback, key):
    assert callback.state_key == key


def test_instances_with_other_arguments_get_other_keys():
    assert PruneAtEnd(0.9).state_key != PruneAtEnd(0.8).state_key
    assert RiGL(0.9).state_key != RiGL(0.9, pattern="2:4").state_key
