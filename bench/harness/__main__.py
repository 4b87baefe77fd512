"""``python3 -m harness`` (from bench/): run the comparison with the knobs in the environment."""

from .run import main

main()
