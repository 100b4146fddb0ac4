import sys

from aibridged.cli import main

sys.exit(main())
