"""mpibench: machine-learning benchmark grids as one MPI program.

Define tasks x learners x resamplings in Python, create a project, run it with
``mpiexec -n 8 mpibench run PROJECT`` (or ``srun``), read the results into pandas.
"""

from ._version import __version__
from .debug import DebugLearner
from .demo import create_demo, demo_data, demo_grid
from .errors import MpibenchError
from .grid import Grid, Task
from .gridfile import GridFile
from .project import create_project
from .runner import run
from .splitters import SameOtherSizesCV
from .status import project_status
from .storage import read_attrs, read_ranks, read_results

__all__ = [
    "DebugLearner",
    "Grid",
    "GridFile",
    "MpibenchError",
    "SameOtherSizesCV",
    "Task",
    "__version__",
    "create_demo",
    "create_project",
    "demo_data",
    "demo_grid",
    "project_status",
    "read_attrs",
    "read_ranks",
    "read_results",
    "run",
]
