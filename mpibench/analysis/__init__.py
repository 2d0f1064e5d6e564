"""Reading a project's results: p-values of same / other / all
(:mod:`~mpibench.analysis.pvalues`), figures (:mod:`~mpibench.analysis.plotting`), the
HTML report (:mod:`~mpibench.analysis.report`) and live status
(:mod:`~mpibench.analysis.status`). Reads :mod:`mpibench.store`; never imports the
engine.
"""
