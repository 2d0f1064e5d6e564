"""A PyTorch network as a scikit-learn learner, in a SOAK grid beside a linear model and
a tree; on a GPU where a rank has one.

Run: python examples/torch_mlp.py [FOLDER]          (serially; FOLDER defaults to
     ``torch-soak`` in the current directory)
     mpiexec -n 4 python examples/torch_mlp.py [FOLDER]
     On SLURM GPU nodes: mpibench sbatch FOLDER --ntasks 5 --gpus-per-task 1 ...

``TorchMLPRegressor`` follows scikit-learn's rules (parameters stored as given in
``__init__``, fitted state in ``*_`` attributes, ``random_state`` seeds it), so mpibench
clones, seeds and pickles it like any estimator. Its ``device="auto"`` picks CUDA inside
``fit`` when the split's process sees a GPU: the model never touches CUDA when it is
built or pickled, so the processes that fork splits never hold a CUDA context.
The grid marks the network ``{"gpu": True}`` when this machine has NVIDIA devices:
its splits then go only to ranks that have one, and the linear model and the tree run
on the others.

Learners must be importable by every rank: this file is also the module
``torch_mlp`` (its folder goes on PYTHONPATH below), and the grid uses that module's
class, not ``__main__``'s.

Each split checkpoints after every epoch, or every ``checkpoint_every`` seconds
(network, optimiser and the batch order's
random state, with ``torch.save``): a split still running when the job's time is up,
or when the job is preempted, resumes from its last epoch in the next job and ends
with the network an uninterrupted fit gives.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

import mpibench as mb


class TorchMLPRegressor(RegressorMixin, BaseEstimator):
    """A multilayer perceptron trained with Adam on standardised inputs and target.

    Parameters
    ----------
    hidden : tuple of int, default=(32, 32)
        Units of each hidden layer (ReLU).
    epochs : int, default=60
        Passes over the training rows.
    batch_size : int, default=64
        Rows per gradient step.
    learning_rate : float, default=0.01
        Adam's step size.
    device : str, default="auto"
        ``"auto"`` (CUDA when the process sees a GPU, else CPU), ``"cpu"``, ``"cuda"``.
    random_state : int, optional
        Seeds the weights and the batch order (mpibench sets it per split).
    checkpoints : bool, default=True
        Save the training state (in an mpibench run) and resume from the last save.
    checkpoint_every : float, default=0
        Seconds between saves: 0 saves after every epoch; a positive value saves after
        the first epoch that ends at least that long after the last save (saving a
        large network takes a while); it always saves when the run is stopping.
    epoch_log : str, optional
        Append a line per epoch to this file: ``random_state epoch seconds``
        (where the time of a long split went, across its attempts).
    """

    def __init__(self, hidden: tuple = (32, 32), epochs: int = 60, batch_size: int = 64,
                 learning_rate: float = 0.01, device: str = "auto",
                 random_state: int | None = None, checkpoints: bool = True,
                 checkpoint_every: float = 0.0, epoch_log: str | None = None) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.random_state = random_state
        self.checkpoints = checkpoints
        self.checkpoint_every = checkpoint_every
        self.epoch_log = epoch_log

    def _device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def fit(self, X, y):
        import torch

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1, 1)
        self.x_mean_, self.x_scale_ = X.mean(0), X.std(0) + 1e-6
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std() + 1e-6)
        generator = torch.Generator().manual_seed(int(self.random_state or 0))
        torch.manual_seed(int(self.random_state or 0))
        device = self._device()
        layers, width = [], X.shape[1]
        for units in self.hidden:
            layers += [torch.nn.Linear(width, units), torch.nn.ReLU()]
            width = units
        network = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1)).to(device)
        inputs = torch.from_numpy((X - self.x_mean_) / self.x_scale_).to(device)
        target = torch.from_numpy((y - self.y_mean_) / self.y_scale_).to(device)
        optimiser = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        checkpoint = mb.split_checkpoint() if self.checkpoints else None  # (None outside
        # an mpibench run)
        epoch = self._resume(checkpoint, network, optimiser, generator, device)
        saved = time.monotonic()
        while epoch < self.epochs:
            started = time.perf_counter()
            order = torch.randperm(len(inputs), generator=generator).to(device)
            for batch in order.split(self.batch_size):
                optimiser.zero_grad()
                loss = torch.nn.functional.mse_loss(network(inputs[batch]), target[batch])
                loss.backward()
                optimiser.step()
            epoch += 1
            if self.epoch_log:
                with open(self.epoch_log, "a") as log:
                    log.write(f"{self.random_state} {epoch} "
                              f"{time.perf_counter() - started:.4f}\n")
            if checkpoint is None or epoch == self.epochs:
                continue
            stopping = checkpoint.should_stop()  # (the run is stopping: resume next time)
            if stopping or time.monotonic() - saved >= self.checkpoint_every:
                with checkpoint.saving() as path:  # model, optimiser, batch order's state
                    torch.save({"epoch": epoch, "network": network.state_dict(),
                                "optimiser": optimiser.state_dict(),
                                "generator": generator.get_state()}, path)
                saved = time.monotonic()
            if stopping:
                break
        self.network_ = network.cpu().eval()  # kept on the CPU: picklable anywhere
        self.device_ = str(device)
        return self

    @staticmethod
    def _resume(checkpoint, network, optimiser, generator, device) -> int:
        """Load the last epoch saved in this split's checkpoint (torch.load of the file
        ``torch.save`` wrote); returns the epochs done (0 without one)."""
        import torch

        if checkpoint is None or checkpoint.file is None:
            return 0
        state = torch.load(checkpoint.file, map_location=device, weights_only=False)
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        return int(state["epoch"])

    def predict(self, X):
        import torch

        X = (np.asarray(X, dtype=np.float32) - self.x_mean_) / self.x_scale_
        with torch.no_grad():
            out = self.network_(torch.from_numpy(X)).numpy().ravel()
        return out * self.y_scale_ + self.y_mean_


def device_used(model) -> dict:
    """``record`` function: the device each network trained on (a column per split)."""
    return {"device": getattr(model, "device_", "")}


def soak_grid(has_gpu: bool):
    """Two people whose target has opposite signs (the demo's data, 300 rows) x a
    network, a linear model and a tree x SOAK (same / other / all, 3 folds)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.tree import DecisionTreeRegressor
    from torch_mlp import TorchMLPRegressor, device_used  # the module's class, not __main__'s

    from mpibench.demo import demo_data

    data = demo_data(n_rows=300, seed=2)
    tasks = [mb.Task(name, X=data[["x"]], y=data[name], subset=data["person"])
             for name in ("easy", "impossible")]
    learners = {"net": TorchMLPRegressor(), "linear": RidgeCV(),
                "tree": DecisionTreeRegressor(max_depth=4)}
    return mb.Grid(tasks, learners, resamplings=[mb.SameOtherSizesCV(folds=3)],
                   scoring=["rmse"], record=device_used,
                   learner_options={"net": {"gpu": True}} if has_gpu else None)


if __name__ == "__main__":
    import os
    import sys
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(  # for any process mpibench starts
        p for p in (here, os.environ.get("PYTHONPATH")) if p)

    has_gpu = any(Path("/dev").glob("nvidia[0-9]*"))  # without touching CUDA here
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("torch-soak")
    code = mb.run(soak_grid(has_gpu), folder, progress_every=0)

    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0 and code == 0:
        results = mb.read_results(folder)
        table = results.groupby(["task", "learner", "train_subsets"], observed=True)["rmse"]
        print(table.mean().unstack().round(3))
        print("network trained on:", sorted(set(results["device"].dropna()) - {""}))
        nets = results[results["learner"] == "net"]
        easy = results[results["task"] == "easy"].groupby("learner", observed=True)["rmse"]
        assert easy.mean()["net"] < easy.mean()["linear"]  # x**2 is not linear
        assert (nets["status"] == "ok").all()
    sys.exit(code)
