"""``python -m bloodcell`` runs the command line."""

import sys

from bloodcell.cli import main

sys.exit(main())
