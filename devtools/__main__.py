"""``python -m devtools``: the same as the ``imgrec`` console script."""

import sys

from devtools.cli import main

sys.exit(main())
