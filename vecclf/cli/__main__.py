"""``python -m vecclf.cli``."""

import sys

from . import main

sys.exit(main())
