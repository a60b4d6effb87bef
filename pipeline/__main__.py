"""``python -m pipeline ...`` == ``crosscot ...``."""

import sys

from pipeline.cli import main

sys.exit(main())
