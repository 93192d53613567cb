"""vidattn engine: config, training loop, evaluation and metrics."""
