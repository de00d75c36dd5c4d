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


def test_the_classes_table_shows_pixel_shares_and_flags_common_classes_below_iou_half(monkeypatch):
    import torch

    from explorer.bench import model_report
    from explorer.data.splits import VALIDATION_SEEDS
    from explorer.data.worlds import render_batch

    entry = model_report.get_model_entry("objects-fpn-mobilenet")
    shares = model_report.validation_label_shares("objects", entry.card["input_size"], 21)
    assert abs(float(shares.sum()) - 1) < 1e-9
    # brute force on the first 3 validation scenes: the same counting, by hand
    _, labels = render_batch("objects", list(VALIDATION_SEEDS)[:3], *entry.card["input_size"])
    monkeypatch.setattr(model_report, "VALIDATION_SEEDS", list(VALIDATION_SEEDS)[:3])
    few = model_report.validation_label_shares("objects", entry.card["input_size"], 21)
    kept = labels[labels != 255]
    assert torch.allclose(few, torch.tensor([(kept == c).sum().item() / kept.numel() for c in range(21)],
                                            dtype=torch.float64))
    text = model_report.classes_table(["objects-fpn-mobilenet"])
    ious = entry.card["validation"]["per_class_iou"]
    for c, name in enumerate(entry.dataset_info.class_names):
        line = next(row for row in text.splitlines() if row.startswith(f"| {name} |"))
        flagged = few[c] >= model_report.MIN_SHARE and ious[c] is not None and ious[c] < model_report.MIN_IOU
        assert ("**" in line) == bool(flagged), line


def test_the_models_table_splits_an_adversarially_trained_model_s_time_into_its_stages():
    from explorer.bench.model_report import models_table
    from explorer.models import get_model_entry

    card = get_model_entry("street-unet-mobilenet-robust").card
    row = models_table(["street-unet-mobilenet-robust"]).splitlines()[-1]
    clean_min = round((card["training_time_s"] - card["adversarial_training"]["time_s"]) / 60)
    adversarial_min = round(card["adversarial_training"]["time_s"] / 60)
    assert "unet-mobilenet, SegPGD-AT, ε = 8/255" in row
    assert f"{card['training_time_s'] / 60:.0f} min ({clean_min} + {adversarial_min})" in row
    plain = models_table(["street-unet-mobilenet"]).splitlines()[-1]
    assert "SegPGD" not in plain and "(" not in plain
