"""semiseq: semi-supervised sequence learning (Dai & Le, 2015) with Lightning and Hydra."""

__version__ = "0.1.0"


class SemiseqError(ValueError):
    """Bad input (data, checkpoint, config): the message names the thing, the value and the fix.
    ``train.py`` prints it as one line instead of a stack trace."""


def load(path: str, device: str | None = None) -> "semiseq.inference.Model":  # noqa: F821
    """Load a checkpoint to predict, embed or test with (see :func:`semiseq.inference.load`)."""
    # Imported here, not above: every layer imports this package (SemiseqError), so the top layer (inference, torch)
    # must not come with it; `import semiseq` stays light and the data code does not import the models.
    from semiseq.inference import load as _load

    return _load(path, device)
