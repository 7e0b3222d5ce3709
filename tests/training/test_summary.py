"""The before/after table a run ends with: exact lines from metrics.jsonl records."""

from __future__ import annotations

from fcloop.training.summary import before_after_table, evaluations

BASE = {
    "step": 0,
    "eval/loss": 1.8331,
    "eval/call_exact_match": 0.375,
    "eval/right_one_call": 0.0,
    "eval/right_several_calls": 0.0,
    "eval/right_no_call": 0.75,
    "eval/decision_accuracy": 0.625,
    "eval/parse_failure_rate": 0.375,
    "eval/schema_valid_rate": None,
    "eval/n": 8,
}
TRAINED = {**BASE, "step": 250, "eval/loss": 0.095, "eval/call_exact_match": 0.625, "eval/right_one_call": 1.0,
           "eval/right_several_calls": 0.5, "eval/right_no_call": 0.5, "eval/decision_accuracy": 0.875,
           "eval/parse_failure_rate": 0.0, "eval/schema_valid_rate": 1.0}  # fmt: skip
TRAIN_STEP = {"step": 1, "train/loss": 2.0, "train/lr": 1e-3}


def test_the_table_puts_the_first_evaluation_beside_the_last():
    assert before_after_table([BASE, TRAIN_STEP, {**TRAINED, "step": 100}, TRAIN_STEP, TRAINED]) == [
        "before and after training, on the eval cases (8 held-out conversations):",
        "                                              step 0   step 250",
        "  eval loss (supervised tokens)                1.833      0.095",
        "  cases right, all kinds                       0.375      0.625",
        "    one call asked                             0.000      1.000",
        "    several calls asked                        0.000      0.500",
        "    no call fits                               0.750      0.500",
        "  call or text chosen right                    0.625      0.875",
        "  answers with a call that does not parse      0.375      0.000",
        "  calls valid for their schema                     -      1.000",
    ]


def test_bfcl_categories_are_rows_when_evaluated():
    bfcl = {"bfcl/accuracy": 0.0, "bfcl/n": 4, "bfcl/too_long": 0, "bfcl/simple_python": 0.0,
            "bfcl/simple_python/n": 2, "bfcl/irrelevance": 0.0, "bfcl/irrelevance/n": 2}  # fmt: skip
    after = {**bfcl, "bfcl/accuracy": 0.75, "bfcl/simple_python": 0.5, "bfcl/irrelevance": 1.0}
    lines = before_after_table([{"step": 0, **bfcl}, {"step": 8, **after}])
    assert lines == [
        "before and after training, on the eval cases (4 BFCL cases):",
        "                                              step 0     step 8",
        "  BFCL, all categories                         0.000      0.750",
        "    irrelevance                                0.000      1.000",
        "    simple_python                              0.000      0.500",
    ]


def test_no_table_without_two_evaluations():
    assert before_after_table([TRAIN_STEP, BASE, TRAIN_STEP]) == []
    assert evaluations([TRAIN_STEP, BASE]) == [BASE]
