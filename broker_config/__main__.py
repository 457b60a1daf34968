"""Entry point for `python -m broker_config`."""

import sys

from broker_config.cli import main

sys.exit(main())
