"""spoolgear: a Gearman-compatible job broker (docs/architecture.md describes its layers)."""

# Chooses between the compiled and the pure-Python core before either is imported.
from broker import build as build

__version__ = "0.1.0"
