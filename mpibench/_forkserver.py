"""``python -m mpibench._forkserver``: the isolation helper of one worker rank."""

from mpibench.isolation import main

main()
