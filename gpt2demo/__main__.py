"""`python -m gpt2demo ...`: see gpt2demo/cli.py."""

import sys

from gpt2demo.cli import main

sys.exit(main())
