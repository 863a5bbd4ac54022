"""The single-neuron study (scripts/single_neuron.py, --fast): which initial signs recover."""

from helpers import load_script


def test_plain_recovers_from_plus_plus_sign_in_also_from_minus_plus_neither_from_w_negative(
    tmp_path,
):
    script = load_script("single_neuron")
    results = script.main(["--fast", "--out", str(tmp_path)])
    recovered = {key: r["loss"] < script.RECOVERED for key, r in results.items()}
    assert recovered == {
        (1, 1, False): True,
        (1, 1, True): True,
        (-1, 1, False): False,
        (-1, 1, True): True,
        (1, -1, False): False,
        (1, -1, True): False,
        (-1, -1, False): False,
        (-1, -1, True): False,
    }
    assert results[(-1, 1, True)]["a"] > 0  # the output weight changed sign
    assert "| − | + |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "single_neuron.png").stat().st_size > 0
