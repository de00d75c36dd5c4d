"""The one exception type the core raises for bad input.

Every function of :mod:`explorer` that rejects what it was given (a tensor of the wrong
shape, a label map with no labelled pixel, a parameter outside its range, ...) raises
:class:`InputError`.  It is a :class:`ValueError`, so ``except ValueError`` still works,
and its message is written for a person: what was wrong, and what would be accepted.
"""


class InputError(ValueError):
    """Bad input to the explorer core, with a message a person can act on."""
