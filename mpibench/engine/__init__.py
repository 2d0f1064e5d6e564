"""The engine: what runs under ``mpiexec`` (internal; the user API is ``mpibench.run``).

Rank 0 runs the :mod:`~mpibench.engine.dispatcher` (the pure-Python
:mod:`~mpibench.engine.scheduler` decides what goes where), the other ranks the worker
loop (:mod:`~mpibench.engine.workerloop`), which runs each split in an isolated
executor (:mod:`~mpibench.engine.isolation`, :mod:`~mpibench.engine.supervisor`) or
in-process (:mod:`~mpibench.engine.inprocess`); both run
:mod:`~mpibench.engine.worker`'s split runner. :mod:`~mpibench.engine.protocol` holds the
messages between them, :mod:`~mpibench.engine.transport` carries them (MPI, or threads
in one process), :mod:`~mpibench.tuning` (outside the engine) the constants benchmarks chose.
Nothing outside this package imports it, except the CLI and ``mpibench.run``.
"""
