"""``python -m edgezo.cli ...`` (the same as ``edgezo ...``)."""

import sys

from . import main

sys.exit(main())
