"""Training and held-out evaluation of the per-frame phase/form classifier (needs the ``[train]`` extra)."""
