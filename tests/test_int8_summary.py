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


def test_an_int8_that_kept_most_layers_in_fp32_says_so():
    """The search may hold its budget by keeping nearly every layer in fp32 (56 of 57 on a
    real-photo checkpoint): the export's notes say that this "int8" is one in name only."""
    from exporters.export import _int8_findings
    from toolchain.pipeline.run_report import _fp32_layers_cell

    def meta(found):
        return {"export_options": {"int8": found, "calibration": {}}}

    names = [f"Conv_{i}" for i in range(53)]
    mostly = dict(FOUND, fp32_layers=names, layers=57)
    assert int8_summary(dict(mostly, latency_ms={}), TRAIN).startswith(
        "int8: minmax, 53 of 57 layers in fp32,")
    problem, notes = _int8_findings(meta(mostly))
    assert problem is None and len(notes) == 1
    assert "keeps 53 of its 57 layers in fp32" in notes[0] and "--qat" in notes[0]
    assert _fp32_layers_cell(mostly) == "53 of 57 layers in fp32 (names in run.json)"
    # a few fp32 layers: an int8 model, with no such note
    few = dict(FOUND, fp32_layers=names[:3], layers=57)
    assert _int8_findings(meta(few)) == (None, [])
    assert _fp32_layers_cell(few) == "Conv_0, Conv_1, Conv_2 (3 of 57 layers in fp32)"
    # the budget missed: the problem names the count out of the whole
    missed = dict(mostly, budget_met=False, stopped="search time spent")
    problem, _ = _int8_findings(meta(missed))
    assert "53 of 57 layers in fp32" in problem
