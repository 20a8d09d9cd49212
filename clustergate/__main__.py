"""``python -m clustergate init ...``: the same as the ``clustergate`` console script."""

import sys

from clustergate.cli import main

sys.exit(main())
