"""The built-in SOAK demo end to end: create, run (in this process), compare subsets.

Run: python examples/soak_demo.py [PROJECT]   (or: mpiexec -n 4 python examples/soak_demo.py)
"""

import sys
import tempfile
from pathlib import Path

import mpibench as mb

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "demo"
project = mb.create_demo(folder)            # 2 tasks x 2 learners x 18 SOAK splits
code = mb.run(project, progress_every=0)   # serial here; SPMD under mpiexec
if code != 0:
    sys.exit(code)
print(mb.project_status(project).format())

results = mb.read_results(project)
table = results.pivot_table(index=["task", "learner", "test_subset"], columns="train_subsets",
                            values="rmse", observed=True)
print(table.round(3))
impossible = table.loc["impossible"]
# For the impossible task (opposite signs), training on the other person cannot work.
assert (impossible["same"] < impossible["other"]).all()
