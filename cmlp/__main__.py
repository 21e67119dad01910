"""`python -m cmlp train ...` runs the cmlp command line."""
import sys

from cmlp.cli import main

sys.exit(main())
