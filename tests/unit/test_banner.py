"""The banner ``spoolgear serve`` prints is read back by the same module that writes it."""

from __future__ import annotations

import pytest

from broker.banner import format_banner, read_banner


def test_a_banner_reads_back_with_every_door() -> None:
    doors = [
        "gearmans=0.0.0.0:4730",
        "gearman=127.0.0.1:4731",
        "uwsgi=127.0.0.1:3031",
        "uwsgi=/run/s.sock",
        "metrics=127.0.0.1:9464",
    ]
    line = format_banner(doors, store="sqlite:/var/lib/j.db", core="compiled", loop="uvloop")
    banner = read_banner(line + "\n")
    assert banner.gearman == "127.0.0.1:4731"
    assert banner.first("gearmans") == "0.0.0.0:4730"
    assert banner.all("uwsgi") == ["127.0.0.1:3031", "/run/s.sock"]
    assert (banner.first("metrics"), banner.first("store")) == (
        "127.0.0.1:9464",
        "sqlite:/var/lib/j.db",
    )
    assert banner.first("suwsgi") == ""


def test_anything_else_is_not_a_banner() -> None:
    with pytest.raises(ValueError, match="not a spoolgear banner"):
        read_banner("")
