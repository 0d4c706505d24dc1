"""``python -m formcheck_models.training [exercise]``: the same as ``formcheck models train``."""

import sys

from formcheck_models.training.train import train_main

raise SystemExit(train_main(sys.argv[1] if len(sys.argv) > 1 else "squat"))
