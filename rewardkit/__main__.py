import sys

from rewardkit.cli import main

if __name__ == "__main__":  # worker processes may import this module: never re-run the CLI there
    sys.exit(main())
