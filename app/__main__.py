"""`python -m app`: the CellLoop command line (see app/cli.py)."""
import sys

from app.cli import main

sys.exit(main())
