"""What every stage script shares: one clear error line instead of a traceback for bad input."""
from __future__ import annotations

import sys
from typing import Callable

from pipeline.config import ConfigError
from pipeline.data.sources import DataError

# Errors caused by the user's params, files or data: reported in one line, exit status 2.
# Anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError)


def run_stage(main: Callable[[list[str]], None]) -> None:
    try:
        main(sys.argv[1:])
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
