"""A run that crashes and is resumed with --ckpt_path ends exactly where the uninterrupted run
ends: same weights, masks, optimizer state and callback states (deterministic CPU)."""

import pytest
import torch
from run_helpers import RECIPES

from sparsify.app.cli import main
from sparsify.portable import restore_state_dict

QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--wandb=false",
    "--trainer.max_epochs=6",
]


def fit(root, *args):
    main(["fit", *args, f"--trainer.default_root_dir={root}", *QUIET])
    (final,) = root.glob("lightning_logs/version_*/checkpoints/final.ckpt")
    return torch.load(final, weights_only=False)


@pytest.mark.parametrize("recipe", RECIPES)
def test_resumed_run_equals_the_uninterrupted_run(recipe, tmp_path):
    overrides = RECIPES[recipe]
    straight = fit(tmp_path / "straight", "--config", recipe, *overrides)

    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(
            [
                "fit",
                "--config",
                recipe,
                *overrides,
                f"--trainer.default_root_dir={crashed}",
                *QUIET,
                "--trainer.callbacks+=run_helpers.CrashInEpoch",
                "--trainer.callbacks.epoch=2",
            ]
        )
    (last,) = crashed.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=False)["epoch"] == 1

    resumed = fit(tmp_path / "resumed", "--config", recipe, *overrides, f"--ckpt_path={last}")

    assert resumed["global_step"] == straight["global_step"]
    # The checkpoints are portable (plain weights θ); m, w and the masks ride in the metadata.
    assert not any(".parametrizations." in k for k in straight["state_dict"])
    straight_state = restore_state_dict(straight["state_dict"])
    resumed_state = restore_state_dict(resumed["state_dict"])
    assert straight_state.keys() == resumed_state.keys()
    for key, value in straight_state.items():
        assert torch.equal(value, resumed_state[key]), key
    assert any(k.endswith(".mask") for k in straight_state)
    for key, state in straight["callbacks"].items():
        if "ModelCheckpoint" in key:
            continue
        assert repr(resumed["callbacks"][key]) == repr(state), key
    for a, b in zip(
        straight["optimizer_states"][0]["state"].values(),
        resumed["optimizer_states"][0]["state"].values(),
    ):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
