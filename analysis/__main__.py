"""python -m analysis report [SECTION ...] | python -m analysis probes [...]"""

import sys

from .cli import main

sys.exit(main())
