"""`python -m cnnlab ...`: see cnnlab.cli."""

import sys

from .cli import main

sys.exit(main())
