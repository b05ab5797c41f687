"""Entry point of the code location: everything in ``recsys_assets/defs``."""

from pathlib import Path

import dagster as dg

from recsys_assets import settings


@dg.definitions
def defs() -> dg.Definitions:
    settings.configure_libraries()
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
