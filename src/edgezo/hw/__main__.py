"""``python -m edgezo.hw report ...`` (the same as ``edgezo hw report ...``)."""

import sys

from ..cli.hw import main

sys.exit(main())
