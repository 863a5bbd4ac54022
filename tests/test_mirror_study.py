"""The orderings the "Mirror, Mirror of the Flow" study measured (docs/results.md), asserted on
the fast modes of scripts/mirror_study.py: one seed; never, always on and switched off at 50 %.
Each run is a real ``sparsify fit`` composition (experiment + recipe) trained by Lightning."""

import pytest

from helpers import load_script


@pytest.fixture(scope="module")
def study():
    return load_script("mirror_study")


def fast(study, setting, out):
    results = study.main(["--setting", setting, "--fast", "--out", str(out)])
    name = f"mirror_{setting}"
    assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    rows = (out / f"{name}.csv").read_text().splitlines()
    assert len(rows) == 1 + len(study.FAST_RECIPES)
    return results


@pytest.mark.parametrize("recipe", ["wd_never", "wd_on_strong", "wd_off_at_25", "wd_geometric"])
def test_each_recipe_is_one_config_away_from_an_experiment(study, recipe):
    cli = study.build(["experiment/matrix_sensing", f"method/{recipe}"], [])
    (schedule,) = [c for c in cli.trainer.callbacks if hasattr(c, "schedule")]
    factors = {"wd_never": 0.0, "wd_on_strong": 4.0, "wd_off_at_25": 1.0, "wd_geometric": 1.0}
    assert schedule.scale == factors[recipe] and schedule.groups is None
    assert [schedule.schedule(t) for t in (0, 0.3)] == {
        "wd_never": [1.0, 1.0],
        "wd_on_strong": [1.0, 1.0],
        "wd_off_at_25": [1.0, 0.0],
        "wd_geometric": [1.0, 0.95**0.3],
    }[recipe]
    assert cli.model.hparams.weight_decay == 5e-4  # the experiment's λ on U, V


def test_sparse_coding(study, tmp_path):
    r = fast(study, "sparse_coding", tmp_path)
    never, on, off = r["wd_never"], r["wd_on"], r["wd_off_at_50"]
    # Generalization: switching off recovers the planted codes; always on is biased.
    assert off["recovery_error"] < 0.05 < 0.2 < on["recovery_error"] < never["recovery_error"]
    # Positional bias: without weight decay the solution keeps the initialization (κ ≈ 1).
    assert never["kept_init"] > 0.8 and abs(on["kept_init"]) < 0.2 and abs(off["kept_init"]) < 0.2
    # Type of bias: L2-like without, L1-like (the truth's ‖x‖₁, sparse) with weight decay.
    assert never["l1_over_l2"] > 2 * off["l1_over_l2"]
    assert abs(off["l1_norm"] - 1) < 0.05 and never["l1_norm"] > 1.5
    # Range shrinking: always on shrinks the codes; after the switch-off they reach ±1 again.
    assert on["final_range"] < off["final_range"] and abs(off["final_range"] - 1) < 0.05


def test_matrix_sensing(study, tmp_path):
    r = fast(study, "matrix_sensing", tmp_path)
    never, on, off = r["wd_never"], r["wd_on"], r["wd_off_at_50"]
    assert off["recovery_error"] < 0.15 < on["recovery_error"] < never["recovery_error"]
    assert never["kept_init"] > 0.8 and abs(on["kept_init"]) < 0.3 and abs(off["kept_init"]) < 0.3
    # Nuclear-norm-like (rank 2: √2 ≈ 1.41) with weight decay, not without.
    assert on["nuclear_over_frobenius"] < 1.6 and off["nuclear_over_frobenius"] < 1.6
    assert never["nuclear_over_frobenius"] > 2.5
    assert on["final_range"] < off["final_range"] and off["final_range"] > 0.9


@pytest.mark.parametrize("setting", ["attention", "lora"])
def test_attention_and_lora(study, tmp_path, setting):
    r = fast(study, setting, tmp_path)
    never, on, off = r["wd_never"], r["wd_on"], r["wd_off_at_50"]
    # Weight decay pulls the matrices towards 0 (less of the initialization kept), shrinks their
    # range, and makes W_Q W_Kᵀ (attention) or the adapted weights (LoRA) lower in rank;
    # switched off half-way, in between.
    assert never["kept_init"] > off["kept_init"] > on["kept_init"]
    assert never["final_range"] > off["final_range"] > on["final_range"]
    if setting == "lora":
        assert never["nuclear_over_frobenius"] > off["nuclear_over_frobenius"]
    assert never["nuclear_over_frobenius"] > on["nuclear_over_frobenius"]
