"""The report's first sentence: does the network or the classical baseline win on the key metrics?"""

import pytest

from pipelines.evaluation import Evaluation, compare
from pipelines.reports import render_html, render_markdown

BASELINE = {"name": "tfidf", "metrics": {"accuracy": 0.9892, "macro_f1": 0.9759, "roc_auc": 0.99}}


@pytest.mark.parametrize("ours, winner, sentence", [
    ({"accuracy": 0.9883, "macro_f1": 0.9743}, "baseline",
     "The baseline (tfidf) beats the network on accuracy, macro_f1 (accuracy 0.9883 vs 0.9892; "
     "macro_f1 0.9743 vs 0.9759). On this data the classical model is the better choice."),
    ({"accuracy": 0.9901, "macro_f1": 0.9780}, "network",
     "The network beats the baseline (tfidf) on accuracy, macro_f1 (accuracy 0.9901 vs 0.9892; "
     "macro_f1 0.9780 vs 0.9759)."),
    ({"accuracy": 0.9901, "macro_f1": 0.9700}, "mixed",
     "Mixed: the network is better on accuracy, the baseline (tfidf) on macro_f1 (accuracy 0.9901 "
     "vs 0.9892; macro_f1 0.9700 vs 0.9759)."),
    ({"accuracy": 0.9892, "macro_f1": 0.9759}, "tie",
     "The network and the baseline (tfidf) tie (accuracy 0.9892 vs 0.9892; macro_f1 0.9759 vs 0.9759)."),
])
def test_the_winner_is_named_on_the_key_metrics_only(ours, winner, sentence):
    result = compare({**ours, "roc_auc": 0.5}, BASELINE, ("accuracy", "macro_f1"))
    assert result["winner"] == winner and result["sentence"] == sentence


def test_ties_are_named_beside_the_win():
    result = compare({"accuracy": 0.9892, "macro_f1": 0.9765}, BASELINE, ("accuracy", "macro_f1"))
    assert result["winner"] == "network" and result["tied"] == ["accuracy"]
    assert result["sentence"] == ("The network beats the baseline (tfidf) on macro_f1 and ties on "
                                  "accuracy (accuracy 0.9892 vs 0.9892; macro_f1 0.9765 vs 0.9759).")


def test_lower_is_better_metrics_and_missing_values():
    baseline = {"name": "atlas", "metrics": {"dice": 0.80, "hd95": 3.0}}
    result = compare({"dice": 0.85, "hd95": 4.0}, baseline, ("dice", "hd95"), lower_is_better=("hd95",))
    assert (result["winner"], result["network_better"], result["baseline_better"]) == \
        ("mixed", ["dice"], ["hd95"])
    assert compare({"dice": float("nan")}, baseline, ("dice",)) is None
    assert compare({"dice": 0.9}, None, ("dice",)) is None


def test_reports_lead_with_the_sentence():
    metrics = {"accuracy": 0.9883, "macro_f1": 0.9743}
    evaluation = Evaluation(metrics=metrics, n_samples=10, baseline=BASELINE, notes=["a note"],
                            comparison=compare(metrics, BASELINE, ("accuracy", "macro_f1")))
    document = {"split": "test", "n_samples": 10, "metrics": metrics, "baseline": BASELINE}
    markdown = render_markdown(document, evaluation, "t", [])
    assert "**The baseline (tfidf) beats the network on accuracy, macro_f1" in markdown
    assert markdown.index("| macro_f1 |") < markdown.index("beats the network") < markdown.index("a note")
    html = render_html(document, evaluation, "t", [])
    assert "<p class='verdict baseline'><b>The baseline (tfidf) beats the network" in html
