"""``python -m ebpfmaps.cli``."""

import sys

from ebpfmaps.cli.app import main

sys.exit(main())
