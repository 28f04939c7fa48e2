"""`python -m gpt <command> [options]`: see gpt/cli/__init__.py."""
import sys

from gpt.cli import main

if __name__ == "__main__":
    sys.exit(main())
