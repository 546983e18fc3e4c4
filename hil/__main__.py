"""Entry point for `python -m hil`."""

import sys

from hil.cli import main

sys.exit(main())
