"""One registry for every attention module of the zoo.

A module class is registered with :func:`register_attention` and carries two class
attributes the rest of the code relies on:

* ``family``: ``channel``, ``spatial``, ``temporal``, ``hybrid`` or ``spatiotemporal``;
* ``kind``: ``block`` (same shape in and out), ``aggregator`` (``(N,C,T,H,W) -> (N,D)``,
  ``D`` in ``out_channels``), ``head`` (``(B,C,H,W) -> (B,num_classes)``) or ``glimpse``
  (``(B,C,H,W) -> (B,C,h,w)``).

Blocks also set ``placement`` (where in a residual unit, see ``models.backbones.insertion``)
and ``paper_layout`` (which stages and units of a ResNet, see ``models.attention.layout``);
clip blocks (temporal and spatio-temporal, :func:`takes_clips`) take ``num_frames``.
"""
from __future__ import annotations

import difflib
import inspect

FAMILIES = ("channel", "spatial", "temporal", "hybrid", "spatiotemporal")
KINDS = ("block", "aggregator", "head", "glimpse")
CLIP_FAMILIES = ("temporal", "spatiotemporal")

_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def register_attention(name: str, *, family: str, kind: str, aliases: tuple[str, ...] = ()):
    """Class decorator: register ``cls`` under ``name`` (plus ``aliases``)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def wrap(cls):
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise KeyError(f"attention name {key!r} is registered twice")
        cls.family = family
        cls.kind = kind
        cls.registry_name = name
        _REGISTRY[name] = cls
        for alias in aliases:
            _ALIASES[alias] = name
        return cls

    return wrap


def _canonical(name: str) -> str:
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        options = sorted(_REGISTRY) + sorted(_ALIASES)
        close = difflib.get_close_matches(key, options, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown attention module {name!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}")
    return key


def get_attention_class(name: str) -> type:
    """The registered class for ``name`` (canonical key or alias)."""
    return _REGISTRY[_canonical(name)]


def build_attention(name: str, channels: int | None = None, **kwargs):
    """Instantiate a registered module: ``build_attention("cbam", channels=256, reduction=16)``.

    An unknown keyword is reported with the module's accepted arguments.
    """
    cls = get_attention_class(name)
    params = inspect.signature(cls.__init__).parameters
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not has_var_kw:
        bad = [k for k in kwargs if k not in params]
        if bad:
            accepted = [p for p in params if p != "self"]
            raise TypeError(f"{cls.registry_name}: unknown argument(s) {bad}; accepted: {accepted}")
    if channels is not None:
        kwargs["channels"] = channels
    return cls(**kwargs)


def list_attention(family: str | None = None, kind: str | None = None) -> list[str]:
    """Sorted canonical names, optionally filtered by family and/or kind."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return sorted(
        n for n, c in _REGISTRY.items()
        if (family is None or c.family == family) and (kind is None or c.kind == kind)
    )


def takes_clips(cls_or_module) -> bool:
    """Whether a block sees clips ``(N,C,T,H,W)`` (temporal and spatio-temporal blocks such as TAM
    and ``nonlocal_st``); other blocks see maps ``(B,C,H,W)``."""
    return (getattr(cls_or_module, "kind", None) == "block"
            and getattr(cls_or_module, "family", None) in CLIP_FAMILIES)


def list_aliases() -> dict[str, str]:
    """alias -> canonical name."""
    return dict(_ALIASES)
