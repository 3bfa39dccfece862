"""Entry point for `python -m notifier`."""

import sys

from notifier.cli import entry

sys.exit(entry())
