"""The model report's per-sample table: each model's clean quality on each sample of its world."""
from explorer.bench.model_report import samples_table
from explorer.live.scene import clean_scores_per_sample


def test_the_samples_table_shows_each_sample_s_clean_scores_and_the_app_s_pick():
    text = samples_table(["objects-fpn-mobilenet"])
    scores = clean_scores_per_sample("objects-fpn-mobilenet", "cpu")
    best = max(scores, key=lambda name: scores[name]["miou"])
    assert f"(the app opens on {best})" in text
    miou_row = [line for line in text.splitlines() if line.startswith("| clean mIoU")][0]
    assert miou_row.split(" | ")[1:] != [] and len(miou_row.split("|")) == len(scores) + 3
    shown = [float(v) for v in miou_row.strip("| ").split(" | ")[1:]]
    assert shown == [round(scores[name]["miou"], 2) for name in sorted(scores)]
