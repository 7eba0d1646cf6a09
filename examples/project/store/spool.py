"""A uWSGI spool handler, unchanged from a uWSGI app: fed by spool packets or spool files,
run by ``spoolgear spooler --import store.spool``."""

import os
from pathlib import Path

from broker.uwsgidecorators import SPOOL_OK, spool

RUN_DIR = Path(os.environ.get("EXAMPLE_RUN_DIR", Path(__file__).resolve().parent.parent / "run"))


@spool
def import_products(arguments: dict[str, str]) -> int:
    imports = RUN_DIR / "imports"
    imports.mkdir(parents=True, exist_ok=True)
    (imports / arguments["file"]).write_text(f"imported {arguments['file']}\n")
    return SPOOL_OK
