"""Synthetic datasets in the official layouts, so every loader, tool and test runs offline."""
from .synthetic_mars import write_synthetic_mars

__all__ = ["write_synthetic_mars"]

try:
    from .synthetic_action import write_synthetic_hmdb51, write_synthetic_ucf101  # noqa: F401
    __all__ += ["write_synthetic_ucf101", "write_synthetic_hmdb51"]
except ImportError:  # pragma: no cover - while the action writers are being built
    pass
