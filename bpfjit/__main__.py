"""`python -m bpfjit`: the `bpfjit` command line (see cli.py). Nothing else lives here."""
import sys

from .cli import main

sys.exit(main())
