"""python -m tinygrad_lite.exercises: see cli.py."""
import sys

from .cli import main

sys.exit(main())
