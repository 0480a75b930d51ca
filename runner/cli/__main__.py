"""`python -m runner.cli ...` runs the command line."""
from . import main

main()
