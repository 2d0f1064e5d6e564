"""What a project keeps on disk, written by the engine and read by the analysis.

``grid.h5`` (:mod:`~mpibench.store.gridfile`; job identities in
:mod:`~mpibench.store.growing`), the crash-safe journal
(:mod:`~mpibench.store.journal`, records in :mod:`~mpibench.store.records` and
:mod:`~mpibench.store.batch`), ``results.h5`` as rank 0 writes it
(:mod:`~mpibench.store.storage`) and its readers (:mod:`~mpibench.store.reading`),
checksums (:mod:`~mpibench.store.checksums`), predictions (:mod:`~mpibench.store.predictions`),
the run lock (:mod:`~mpibench.store.lock`) and the project's paths and atomic writes
(:mod:`~mpibench.store.paths`). No MPI here.
"""
