"""`python3 -m bench` (run by .ci/bench/run.sh, i.e. `make bench`)."""
import sys

from .runner import main

sys.exit(main())
