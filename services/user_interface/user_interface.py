"""jobstack user_interface: python services/user_interface/user_interface.py [--config PATH].

The image's entry point. The code is in the installed package `jobstack` (services/pyproject.toml);
config.ini lies beside this file.
"""

import sys
from pathlib import Path

from jobstack.user_interface import main

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().with_name("config.ini")))
