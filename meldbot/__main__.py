"""`python -m meldbot` is the `meldbot` command."""

import sys

from meldbot.cli import main

sys.exit(main())
