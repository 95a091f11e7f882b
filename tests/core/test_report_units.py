"""train-ranker's report.md shows scores in percent, the unit of blender eval's table."""

from __future__ import annotations


def test_train_report_shows_scores_in_percent_like_eval() -> None:
    from blender_core.training.report import format_report

    text = format_report(
        {
            "dev": {"pairwise_accuracy": 0.625, "top1_gpt4_pref": 0.8, "loss": 0.6931},
            "dev_top1_vs_baselines": [
                {"metric": "gpt4_pref", "ranker_top1": 0.8, "oracle": 0.983, "random": 0.6284}
            ],
        }
    )
    assert "| pairwise_accuracy (%) | 62.5 |" in text
    assert "| top1_gpt4_pref (%) | 80.0 |" in text
    assert "| loss | 0.6931 |" in text  # not a score: as it is
    assert "| metric | ranker_top1 (%) | oracle (%) | random (%) |" in text
    assert "| gpt4_pref | 80.0 | 98.3 | 62.8 |" in text
