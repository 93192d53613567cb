"""Heads: clip aggregators, the re-ID BNNeck and action classifiers."""
from .aggregators import TemporalPool, build_aggregator, call_aggregator
from .bnneck import BNNeck
from .classifier import LinearHead

__all__ = ["TemporalPool", "build_aggregator", "call_aggregator", "BNNeck", "LinearHead"]
