"""The line ``spoolgear serve`` prints once it accepts connections, and reading it back.

``spoolgear listening gearman=127.0.0.1:4730 uwsgi=/run/s.sock store=sqlite:... core=compiled
loop=uvloop``: whatever started the broker (a supervisor script, the demo, a benchmark, a
test) learns from it that every door is open and where, including ports picked by
``--port 0``. Written and read here only, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "spoolgear listening"


def format_banner(doors: list[str], *, store: str, core: str, loop: str) -> str:
    """``doors`` are ``KIND=ADDRESS`` words (``gearman=127.0.0.1:4730``), in listening order."""
    return f"{PREFIX} {' '.join(doors)} store={store} core={core} loop={loop}"


@dataclass(frozen=True)
class Banner:
    """A banner read back: its ``KIND=VALUE`` words, in order (a kind may repeat)."""

    words: tuple[tuple[str, str], ...]

    def all(self, kind: str) -> list[str]:
        """Every address of one kind of door (``uwsgi``, ``suwsgi``...), in order."""
        return [value for name, value in self.words if name == kind]

    def first(self, kind: str) -> str:
        """The first value of ``kind``; empty when there is none."""
        return next(iter(self.all(kind)), "")

    @property
    def gearman(self) -> str:
        """The plaintext Gearman address (with ``--ssl``, the ``--plain-listen`` one, if any)."""
        return self.first("gearman")


def read_banner(line: str) -> Banner:
    """The banner in ``line``; ValueError when the line is not one (the broker failed to
    start, and said why on stderr)."""
    if not line.startswith(PREFIX + " "):
        raise ValueError(f"not a spoolgear banner: {line!r}")
    words = line[len(PREFIX) :].split()
    return Banner(tuple((name, value) for name, _, value in (w.partition("=") for w in words)))
