"""semiseq: semi-supervised sequence learning (Dai & Le, 2015) with Lightning and Hydra."""

__version__ = "0.1.0"


class SemiseqError(ValueError):
    """Bad input (data, checkpoint, config): the message names the thing, the value and the fix.
    ``train.py`` prints it as one line instead of a stack trace."""
