"""MkDocs hooks: the pages made at build time from what the repository keeps in one place.

The option reference comes from ``ServerConfig`` (where every ``spoolgear serve`` option is
declared), so it cannot drift from the code; the front page is the README, and the
benchmark figures, the supervisord how-to and the changelog are their own files, each
shown in the site as it is in the repository.
"""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from broker.config import ServerConfig
from broker.options import declared_options, flag_of
from broker.uwsgi_compat.spooler import SpoolerSettings

ROOT = Path(__file__).resolve().parent.parent
# Site path: repository file shown there as it is.
INCLUDED = {
    "benchmarks.md": "bench/RESULTS.md",
    "ratios.png": "bench/ratios.png",
    "django_peers.png": "bench/django_peers.png",
    "supervisord.md": "supervisor/README.md",
    "example-shop.conf": "supervisor/example-shop.conf",
    "changelog.md": "CHANGELOG.md",
    "trust.md": "SECURITY.md",
    "LICENSE": "LICENSE",
}
TABLE_HEAD = ["| option | default | meaning |", "| --- | --- | --- |"]
OPTIONS_INTRO = """# Every option of `spoolgear serve` and `spoolgear spooler`

Generated from `ServerConfig` in `broker/config.py`, where each option is declared once with
its default, its check and its help; the command-line parser, the checks, the
[configuration file](operations.md#a-configuration-file) and this page all come from there.
In a configuration file each option is the key without its dashes (`job-retries = 3`); a
repeatable option takes a list. An option given on the command line wins over the file.
"""


def on_files(files: Files, config: MkDocsConfig) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "index.md", content=front_page(readme)))
    files.append(File.generated(config, "options.md", content=options_page()))
    for uri, source in INCLUDED.items():
        files.append(File.generated(config, uri, abs_src_path=str(ROOT / source)))
    return files


def front_page(readme: str) -> str:
    """The README, its links to repository files made links to the site's pages."""
    for uri, source in INCLUDED.items():
        readme = readme.replace(f"]({source})", f"]({uri})")
    return readme.replace("](docs/", "](")


def shown_default(declared: Any) -> str:
    if declared.default_factory is not MISSING:
        return " ".join(str(declared.default_factory.__doc__).split())
    default = declared.default
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        return ", ".join(f"`{item}`" for item in default) or "none"
    return f"`{default}`" if default not in ("", None) else "none"


def option_row(declared: Any) -> str:
    meta = declared.metadata
    flag = flag_of(declared)
    spellings = ", ".join(f"`{name}`" for name in meta["aliases"])
    usage = f"`{flag} {meta['metavar'] or declared.name.upper()}`"
    if isinstance(declared.default, bool):
        usage = f"`{flag}`"
    if spellings:
        usage += f" (or {spellings})"
    notes = [meta["help"]]
    if meta["repeat"] and "repeatable" not in meta["help"]:
        notes.append("repeatable")
    if meta["environment"]:
        notes.append(f"`${meta['environment']}` when not given")
    if meta["rule"]:
        notes.append(meta["rule"])
    meaning = "; ".join(notes).replace("|", "\\|")
    return f"| {usage} | {shown_default(declared)} | {meaning} |"


SPOOLER_INTRO = """## `spoolgear spooler`

The options of the process that runs uWSGI-style spool handlers ([the uWSGI front
door](uwsgi.md#the-uwsgi-front-door)), from `SpoolerSettings` in
`broker/uwsgi_compat/spooler.py`; besides them, `--import MODULE` (repeatable, required),
`--burst`, `--verbose LEVEL` and the client TLS options (`--ssl`, `--ssl-ca-file`,
`--ssl-certificate`, `--ssl-key`).
"""


def options_page() -> str:
    groups: dict[str, list[str]] = {}
    for declared in declared_options(ServerConfig):
        groups.setdefault(declared.metadata["group"] or "The broker", []).append(
            option_row(declared)
        )
    parts = [OPTIONS_INTRO]
    for group, rows in groups.items():
        parts += [f"## {group}", "", *TABLE_HEAD, *rows, ""]
    parts += [SPOOLER_INTRO, *TABLE_HEAD]
    parts += [option_row(declared) for declared in declared_options(SpoolerSettings)]
    return "\n".join([*parts, ""])
