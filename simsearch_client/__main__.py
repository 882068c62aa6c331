"""`python -m simsearch_client ...`: see simsearch_client/cli.py."""

import sys

from simsearch_client.cli import main

sys.exit(main())
