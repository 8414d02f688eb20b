"""``python -m edgezo.hw report ...`` (the same as ``edgezo hw report ...``)."""

import sys

from .cli import main

sys.exit(main())
