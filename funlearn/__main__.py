import sys

from funlearn.cli import main

sys.exit(main())
