"""``python -m mpibench.engine._forkserver``: the isolation supervisor of one worker rank, as a
new interpreter (when MPI was initialised before one could be forked)."""

from mpibench.engine.supervisor import main

main()
