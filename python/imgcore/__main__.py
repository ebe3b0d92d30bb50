import sys

from imgcore.cli import main

sys.exit(main())
