"""Which procedural seeds are used for what, so that no evaluation image was trained on.

* ``SAMPLE_SEEDS`` — the shipped sample images (``explorer/data/sample_images/``).
* ``VALIDATION_SEEDS`` — the validation set of the model cards.
* ``TRAIN_SEED_START`` — training scenes use seeds ``TRAIN_SEED_START + i``.

The three ranges are disjoint; ``tests/data/test_splits_samples.py`` checks it.
"""
SAMPLE_SEEDS = range(0, 1000)
VALIDATION_SEEDS = range(10_000, 10_200)
TRAIN_SEED_START = 1_000_000


def training_seeds(count: int, offset: int = 0) -> range:
    """``count`` training seeds, starting ``offset`` seeds into the training range."""
    return range(TRAIN_SEED_START + offset, TRAIN_SEED_START + offset + count)
