"""``python -m genrec``: the command line."""

import sys

from genrec.cli import main

sys.exit(main())
