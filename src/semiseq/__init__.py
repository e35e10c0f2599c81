"""semiseq: semi-supervised sequence learning (Dai & Le, 2015) with Lightning and Hydra."""

__version__ = "0.1.0"
