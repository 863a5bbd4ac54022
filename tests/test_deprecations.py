"""Renamed spellings that configs may still hold work, warn once and name the new spelling."""

import warnings

import pytest

from sparsify import renamed
from sparsify.callbacks import PILoT
from sparsify.callbacks.ham_step import HAMStep


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(renamed, "_warned", set())


def caught(make):
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        made = make()
    return made, [str(r.message) for r in records if r.category is FutureWarning]


def test_the_old_callback_name_ham_is_hamstep_and_warns_once():
    from sparsify.callbacks import HAM

    first, messages = caught(lambda: HAM(alpha=5.0, beta=0.01))
    assert isinstance(first, HAMStep)
    assert first.options["alpha"] == 5.0 and first.options["beta"] == 0.01
    assert messages == ["sparsify.callbacks.HAM is deprecated: use sparsify.callbacks.HAMStep"]
    _, again = caught(lambda: HAM())
    assert again == []


def test_pilot_k_and_k_relative_set_the_l1_threshold_and_warn_once():
    pilot, messages = caught(lambda: PILoT(K=0.2, K_relative=False))
    assert pilot.l1_threshold == 0.2 and pilot.l1_threshold_relative is False
    assert messages == [
        "PILoT(K=...) is deprecated: use PILoT(l1_threshold=...)",
        "PILoT(K_relative=...) is deprecated: use PILoT(l1_threshold_relative=...)",
    ]
    again, more = caught(lambda: PILoT(K=0.3))
    assert again.l1_threshold == 0.3 and more == []


def test_a_config_with_the_old_spellings_still_parses():
    """What a user's YAML holds: ``class_path: sparsify.callbacks.HAM`` and PILoT's ``K``."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import Callback

    parser = ArgumentParser()
    parser.add_argument("--callbacks", type=list[Callback])
    config = parser.parse_string(
        "callbacks:\n"
        "  - class_path: sparsify.callbacks.HAM\n"
        "    init_args: {alpha: 5.0}\n"
        "  - class_path: sparsify.callbacks.PILoT\n"
        "    init_args: {K: 0.2, K_relative: false}\n"
    )
    built, messages = caught(lambda: parser.instantiate_classes(config).callbacks)
    ham, pilot = built
    assert isinstance(ham, HAMStep) and ham.options["alpha"] == 5.0
    assert pilot.l1_threshold == 0.2 and pilot.l1_threshold_relative is False
    assert len(messages) == 3
