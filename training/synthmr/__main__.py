import sys

from synthmr.cli import main

sys.exit(main())
