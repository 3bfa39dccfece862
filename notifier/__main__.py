"""Entry point for `python -m notifier`."""

import sys

from notifier.cli import main

sys.exit(main())
