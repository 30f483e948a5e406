"""``python -m pil_kmc``: the ``kmc`` command line."""

import sys

from .cli import main

sys.exit(main())
