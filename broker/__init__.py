"""spoolgear: a Gearman-compatible job broker (see DESIGN.md for the layers)."""

__version__ = "0.1.0"
