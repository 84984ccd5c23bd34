"""The export's human summary of the int8 search: the choice, and every caveat a user needs."""
from toolchain.commands.export import int8_summary

FOUND = {"method": "minmax", "per_channel": True, "fp32_layers": ["Conv_3"], "metric": "accuracy drop",
         "drop_pp": 0.0, "heldout_samples": 80, "max_drop_pp": 1.0, "budget_met": True}
TRAIN = {"kind": "train-split", "samples": 160, "source": "data (split train)", "fingerprint": "ab" * 8}


def test_summary_says_what_was_chosen_and_that_train_images_are_optimistic():
    text = int8_summary(dict(FOUND, latency_ms={"fp32": 5.0, "int8_all": 3.0, "mixed": 3.4}), TRAIN)
    first, *caveats = text.splitlines()
    assert first.startswith("int8: minmax, 1 layer(s) in fp32, accuracy drop 0.00 pp on 80 held-out "
                            "(budget 1 pp: met)")
    assert "mixed 3.4 ms" in first
    assert len(caveats) == 1 and "training images" in caveats[0] and "--split val" in caveats[0]


def test_summary_flags_an_int8_that_is_not_faster_than_fp32():
    text = int8_summary(dict(FOUND, fp32_layers=[], latency_ms={"fp32": 0.10, "int8_all": 0.15}),
                        {"kind": "folder", "samples": 10, "source": "photos"})
    assert "not faster than fp32 on this machine (0.15 vs 0.1 ms" in text
    assert "training images" not in text        # a folder of the user's is not the training split


def test_unmeasured_int8_claims_nothing():
    found = {"method": "minmax", "per_channel": True, "fp32_layers": [], "drop_pp": None,
             "latency_ms": {"fp32": 5.0, "int8_all": 3.0}}
    text = int8_summary(found, TRAIN)
    assert "unmeasured" in text and len(text.splitlines()) == 1
