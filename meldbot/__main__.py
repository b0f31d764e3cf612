"""`python -m meldbot` is the `meldbot` command."""

import sys

from meldbot.run.cli import main

sys.exit(main())
