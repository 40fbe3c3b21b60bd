import sys

from chatprobe.cli import main

sys.exit(main())
