"""jobstack engine: python services/engine/engine.py [--config PATH] (the image's entry point).

The code is in the installed package `jobstack` (services/pyproject.toml); config.ini lies beside
this file.
"""

import sys
from pathlib import Path

from jobstack.engine import main

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().with_name("config.ini")))
