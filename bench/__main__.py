"""``python -m bench`` (and ``torchrun ... -m bench train ...``): the ``bench`` command."""

import sys

from bench.cli import main

sys.exit(main())
