"""spoolgear: a Gearman-compatible job broker (see DESIGN.md for the layers)."""

# Chooses between the compiled and the pure-Python core before either is imported.
from broker import build as build

__version__ = "0.1.0"
