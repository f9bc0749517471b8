"""``python -m bench.cli``: the same command as ``bench`` and ``python -m bench``."""

import sys

from bench.cli import main

sys.exit(main())
