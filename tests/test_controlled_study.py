from helpers import load_script


def test_fast_mode_reproduces_the_qualitative_results_of_the_papers(tmp_path):
    errors = load_script("controlled_study").main(["--fast", "--out", str(tmp_path)])
    # Mirror, Mirror of the Flow (docs/methods.md): switching weight decay off part-way reaches
    # the sparse truth.
    assert errors["weight decay 0.05: off after 50 %"] < 0.01
    assert errors["weight decay 0.2: off after 10 %"] < 0.01
    assert errors["weight decay 0.05: always on"] > 0.05
    assert errors["weight decay 0.2: always on"] > 0.05
    assert errors["weight decay: never"] > 0.5
    # Mask in the Mirror (docs/methods.md, "PILoT"): a quickly decaying α reaches it; the spred
    # initialization does not.
    assert errors["PILoT α₀ = 0.2, 0.95^k"] < 0.01
    assert errors["PILoT α₀ = 0.2, 0.95^k"] < errors["PILoT α₀ = 0.2, constant"]
    assert errors["spred (β = 0), weight decay 0.05"] > 0.3
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n") == 2 + len(errors)
    assert (tmp_path / "error.png").read_bytes()[:4] == b"\x89PNG"
