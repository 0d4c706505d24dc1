"""Training and held-out evaluation of the per-frame phase/form classifier.

Importing this package is cheap: TensorFlow (the ``[train]`` extra) is imported only once training starts.
"""

from formcheck_models.training.train import train_main

__all__ = ["train_main"]
