"""The method registry (sparsify.methods): every shipped recipe is registered with its family and
target arguments, and ``sparsify compare`` takes both from it."""

import inspect

import pytest
import yaml

from sparsify import ConfigError
from sparsify.app.cli import read_config, shipped_configs
from sparsify.app.compare import _callback_class, load_method, with_sparsity
from sparsify.methods import FAMILIES, METHODS, method

SHIPPED = {name for name in shipped_configs() if name.startswith("method/")}
FIT_RECIPES = sorted(name for name, entry in METHODS.items() if entry.driver is None)


def test_every_shipped_method_recipe_is_registered_and_every_registered_recipe_exists():
    registered = {entry.recipe for entry in METHODS.values()}
    assert SHIPPED - registered == set()
    assert registered - set(shipped_configs()) == set()
    for name, entry in METHODS.items():
        assert entry.name == name and entry.family in FAMILIES
        assert (entry.family == "reference") == (entry.targets == ())


@pytest.mark.parametrize("name", FIT_RECIPES)
def test_registered_targets_are_the_callback_arguments_that_take_a_sparsity(name):
    """The grid's sparsity goes where it always went: into ``sparsity`` or ``final_sparsity`` of
    every callback of the recipe that takes one, and nowhere else."""
    callbacks = read_config(METHODS[name].recipe)["trainer"]["callbacks"]
    expected = []
    for callback in callbacks:
        cls = _callback_class(name, callback)
        parameters = inspect.signature(cls).parameters
        arg = next((a for a in ("sparsity", "final_sparsity") if a in parameters), None)
        expected += [f"{cls.__name__}.{arg}"] if arg else []
    assert sorted(set(expected)) == sorted(METHODS[name].targets)
    if expected:
        applied = with_sparsity(load_method(f"method/{name}"), 0.37)["trainer"]["callbacks"]
        for callback, original in zip(applied, callbacks, strict=True):
            cls = _callback_class(name, callback)
            before = _init_args(original)
            changed = {k: v for k, v in _init_args(callback).items() if before.get(k) != v}
            wanted = [t.split(".")[1] for t in expected if t.startswith(f"{cls.__name__}.")]
            assert changed == {arg: 0.37 for arg in wanted}


def _init_args(callback) -> dict:
    return (callback.get("init_args") or {}) if isinstance(callback, dict) else {}


def test_compare_takes_the_family_from_the_registry_not_the_name(tmp_path):
    assert load_method("method/rigl").family == "DST"
    assert load_method("method/pilot").family == "continuous"
    assert load_method("method/ham_pai").family == "PaI"
    assert load_method("method/ham").family == "reference"
    assert load_method("method/ham_imagenet+method/acdc").family == "dense-to-sparse"
    # A file of one's own: its callbacks say what it is, whatever its name.
    path = tmp_path / "snip_but_gradual.yaml"
    callback = {"class_path": "sparsify.callbacks.magnitude_pruning.MagnitudePruning"}
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    loaded = load_method(str(path))
    assert loaded.family == "dense-to-sparse"
    assert loaded.targets == ("MagnitudePruning.final_sparsity",)


@pytest.mark.parametrize("name", sorted(n for n, entry in METHODS.items() if not entry.driver))
def test_a_copy_of_a_registered_recipe_keeps_its_family(tmp_path, name):
    """A tuned copy of a shipped recipe (configs/compare/fashion_mnist/) is read from its
    callbacks; it must land in the family the registry gives the original."""
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(read_config(METHODS[name].recipe)))
    assert load_method(str(path)).family == METHODS[name].family


def test_an_unregistered_method_fails_naming_the_registered_ones():
    with pytest.raises(ConfigError) as error:
        method("method/nope")
    message = str(error.value)
    assert message.startswith("method 'method/nope' is not registered: choose one of acdc, ")
    assert "gmp" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"unknown method 'method/nope': .*method/gmp"):
        load_method("method/nope")
