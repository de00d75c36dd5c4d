"""Fixed-budget attacks before and after their alignment with the authors' code (issue 21).

Runs TsallisPGD, APGD on masked CE with radius stages, and SEA twice on the first four (or N) sample
images of a shipped model — with the earlier behaviour (``track="objective"``; APGD also
``stage_start="last"``; SEA the 2023 members) and with today's defaults — at the same radii,
iterations and seed, and prints a markdown table of the pixel accuracy (mean of per-image
accuracies) and the pooled mIoU left by each (lower is stronger).

Usage::

    python scripts/fixed_budget_alignment.py street-unet-mobilenet 100 1,2
    #                                        model                 iterations  radii × 255
    python scripts/fixed_budget_alignment.py street-unet-mobilenet 100 0.5,1 8 SEA
    #                                        ... then the number of samples and which rows (titles' first words)
"""
import sys

import torch

from explorer.attacks.registry import get_attack
from explorer.bench.model_report import sample_batch
from explorer.metrics import confusion_matrix, mean_iou, pixel_accuracy
from explorer.models import get_model_entry, load_model

#: (title, attack, earlier behaviour, today's)
VARIANTS = (
    ("TsallisPGD", "tsallis_pgd", {"track": "objective"}, {}),
    ("APGD masked CE + radius stages", "apgd",
     {"loss": "masked_ce", "radius_reduction": True, "track": "objective", "stage_start": "last"},
     {"loss": "masked_ce", "radius_reduction": True}),
    ("SEA", "sea", {"track": "objective", "members": "arxiv2023"}, {}),
)


def main(argv):
    torch.set_num_threads(1)
    model_name = argv[0] if argv else "street-unet-mobilenet"
    steps = int(argv[1]) if len(argv) > 1 else 100
    radii = [float(v) for v in argv[2].split(",")] if len(argv) > 2 else [1.0, 2.0]
    model = load_model(model_name, device="cpu")
    images, labels, _ = sample_batch(get_model_entry(model_name).world)
    count = int(argv[3]) if len(argv) > 3 else 4
    rows = [v for v in VARIANTS if len(argv) <= 4 or v[0].split()[0] in argv[4].split(",")]
    images, labels = images[:count], labels[:count]
    num_classes = model.num_classes
    print(f"model {model_name}, {len(images)} samples, {steps} iterations per attack (SEA: per member), "
          f"torch threads 1")
    print("| attack | ε × 255 | before: pixel acc. | after: pixel acc. | before: mIoU | after: mIoU |")
    print("|---|---|---|---|---|---|")
    for eps in radii:
        for title, name, before, after in rows:
            row = []
            for params in (before, after):
                torch.manual_seed(0)
                result = get_attack(name)(model, images, labels, eps=eps / 255, num_steps=steps, **params)
                with torch.no_grad():
                    prediction = model(result.adv_images).argmax(1)
                row.append((float(pixel_accuracy(prediction, labels, num_classes).mean()),
                            float(mean_iou(confusion_matrix(prediction, labels, num_classes)))))
            print(f"| {title} | {eps:g} | {row[0][0]:.4f} | {row[1][0]:.4f} | {row[0][1]:.4f} | {row[1][1]:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
