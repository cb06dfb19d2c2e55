"""`python -m hematolib ...`: see hematolib.cli."""

import sys

from .cli import main

sys.exit(main())
