"""``python -m sparsernn.agents``: see :mod:`sparsernn.agents.cli`."""
import sys

from .cli import main

sys.exit(main())
