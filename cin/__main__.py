import sys

from cin.cli import main

sys.exit(main())
