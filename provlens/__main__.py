"""`python -m provlens`."""

import sys

from provlens.cli import main

sys.exit(main())
