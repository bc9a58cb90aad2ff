"""`python -m lastmile backtest` on a small unseen shop: the table ops and analysts read."""

from __future__ import annotations

from lastmile.evaluation.backtest import format_result, run


def test_backtest_scores_windows_detection_and_false_lost_on_an_unseen_seed():
    result = run(seed=23, n_orders=400, step_hours=24)
    s = result.scores
    assert s["windows"]["n"] > 10 and 0.8 <= s["windows"]["kept"] <= 1.0
    assert s["lost"]["recall"] >= 0.9 and s["false_lost"]["rate"] <= 0.02
    assert s["late"]["precision"] >= 0.9
    table = format_result(result)
    for row in ("ours (first window per case)", "carrier estimate, on the date", "false lost", "lag p95 h"):
        assert row in table
