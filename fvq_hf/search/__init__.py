"""Exact nearest-code search in bounded memory: `nearest_code` dispatches to the C++ kernel on the CPU (`kernel`)
or to tiled torch (`tiled`); see `dispatch` for the rule."""

from .dispatch import BACKENDS, nearest_code
from .tiled import autocast_search, tiled_search

__all__ = ["BACKENDS", "autocast_search", "nearest_code", "tiled_search"]
