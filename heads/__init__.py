"""PyTorch classifier heads, losses, training, ensembles, metrics and the decision rule."""
