"""The built-in SOAK demo end to end: create, run, p-values, the two figures, a report.

Run: python examples/soak_demo.py [FOLDER]     (writes FOLDER/demo and the figures there;
FOLDER defaults to ``soak-demo`` in the current directory)
The same project also runs under MPI: mpiexec -n 4 mpibench run FOLDER/demo
"""

import sys
from pathlib import Path

import mpibench as mb

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("soak-demo")
project = mb.create_demo(folder / "demo")  # 2 tasks x 2 learners x 18 SOAK splits
code = mb.run(project, progress_every=0)    # serial here; SPMD under mpiexec
if code != 0:
    sys.exit(code)
print(mb.project_status(project).format())

results = mb.read_results(project)
result = mb.pvalue(results, "rmse")          # same vs other, same vs all, per fold
print(result.pvalues[["task", "test_subset", "learner", "comparison", "mean_diff",
                      "p_paired"]].round(4).to_string(index=False))
mb.plot_pvalue(result, folder / "pvalue.png")
mb.plot_timeline(results, folder / "timeline.png")
mb.write_report(project, folder / "report.html")
print(f"figures and report in {folder}")

# For the impossible task (opposite signs), training on the other person cannot work.
impossible = result.pvalues.query("task == 'impossible' and comparison == 'other-same'")
assert (impossible["mean_diff"] > 0).all()
