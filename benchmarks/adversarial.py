"""Adversarial checks: kills at random moments, and bad inputs a new user gives.

``kills``: a project of 300 short splits (two ``DebugLearner``s, 5-10 ms each) runs
under ``mpiexec -n 3 mpibench run``; after a random delay one process gets a signal:
``mpiexec``, rank 0, a worker rank, an isolation supervisor or an executor, with
SIGKILL, SIGTERM or SIGINT. Each try checks that every process ends within 60 s of the
signal (no hang), then resumes until the run exits 0, and that the results equal a
clean run's (same job ids, same scores).

``inputs``: each bad input is a command (or a few lines of Python); it counts as one
line when it exits non-zero (or as the table says), prints no traceback, and at most
one line of stderr says "error".

Usage: python benchmarks/adversarial.py [kills|inputs|both] [--kills 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold, ShuffleSplit

import mpibench as mb

BIN = Path(sys.executable).parent
MPIBENCH = [sys.executable, "-m", "mpibench"]
TARGETS = ("mpiexec", "rank 0", "worker", "supervisor", "executor")
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


def grid() -> mb.Grid:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(100, 3)), y=rng.normal(size=100))
    learners = {"a": mb.DebugLearner(sleep_fit=0.01), "b": mb.DebugLearner(sleep_fit=0.005)}
    return mb.Grid([task], learners, [ShuffleSplit(150, test_size=0.2, random_state=0)])


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                children = []
            found.extend(children)
            stack.extend(children)
    return found


def role(pid: int) -> str | None:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    if name == "mpibench-super":
        return "supervisor"
    if name.startswith("mpibench-exec"):
        return "executor"
    if b"PMI_RANK=0" in environ:
        return "rank 0"
    if any(e.startswith(b"PMI_RANK=") for e in environ):
        return "worker"
    return None


def pick(proc: subprocess.Popen, target: str) -> int | None:
    if target == "mpiexec":
        return proc.pid
    found = [p for p in descendants(proc.pid) if role(p) == target]
    return random.choice(found) if found else None


def run_to_completion(project: Path) -> int:
    for attempt in range(1, 6):
        done = subprocess.run([str(BIN / "mpiexec"), "-n", "3", *MPIBENCH, "run",
                               str(project), "--progress-every", "0"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return attempt
    raise AssertionError(f"no clean end after 5 resumes: {done.stderr[-2000:]}")


def kills(n_kills: int, folder: Path) -> None:
    reference = mb.create_project(folder / "reference", grid())
    run_to_completion(reference)
    expected = mb.read_results(reference).set_index("job_id")["rmse"].sort_index()
    rows, survived = [], 0
    for i in range(n_kills):
        project = mb.create_project(folder / f"k{i}", grid())
        target, sig = random.choice(TARGETS), random.choice(SIGNALS)
        delay = random.uniform(0.2, 3.0)
        proc = subprocess.Popen([str(BIN / "mpiexec"), "-n", "3", *MPIBENCH, "run",
                                 str(project), "--progress-every", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        time.sleep(delay)
        pid = pick(proc, target)
        sent = time.monotonic()
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pid = None
        try:
            proc.communicate(timeout=60)
            hung = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            hung = True
        ended = time.monotonic() - sent
        resumes = run_to_completion(project)
        results = mb.read_results(project).set_index("job_id").sort_index()
        good = results["status"] == "ok"
        same = results.index.equals(expected.index) and np.allclose(
            results.loc[good, "rmse"], expected[good])
        failed = results.loc[~good, "status"].astype(str).value_counts().to_dict()
        ok = same and not hung
        survived += ok
        rows.append((i, target if pid else f"{target} (gone)", sig.name, f"{delay:.2f}",
                     proc.returncode, f"{ended:.2f}", resumes, "yes" if ok else "NO",
                     ", ".join(f"{n} {k}" for k, n in failed.items()) or "-"))
        shutil.rmtree(project)
    print("| try | target | signal | after (s) | exit | ended after (s) | runs to finish "
          "| no hang, every ok score equal | splits not ok |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    slowest = max(float(r[5]) for r in rows)
    print(f"\n{survived} of {len(rows)} kills survived (no hang, every split has a result, "
          f"every ok score equals a clean run's); slowest end after the signal: "
          f"{slowest:.2f} s")


def python_input(code: str) -> list[str]:
    """Python code run as a user's script would: an MpibenchError is caught and its
    message printed (what counts is that it is one line)."""
    body = "\n".join("    " + line for line in code.splitlines())
    return [sys.executable, "-c", "import sys\nimport numpy as np, mpibench as mb\ntry:\n"
            + body + "\nexcept mb.MpibenchError as exc:\n"
            "    print(f'mpibench: error: {exc}', file=sys.stderr)\n    sys.exit(2)"]


def bad_inputs(folder: Path) -> list[tuple[str, list[str] | str, int | None]]:
    """``(what, command or shell line, expected exit code or None: non-zero)``."""
    demo = mb.create_demo(folder / "demo")
    subprocess.run([*MPIBENCH, "run", str(demo), "--progress-every", "0"], check=True,
                   capture_output=True)
    big = mb.create_project(folder / "big", mb.Grid(
        [mb.Task("t", X=np.zeros((20, 1)), y=np.arange(20.0))], [mb.DebugLearner()],
        [ShuffleSplit(1500, random_state=0)]))
    subprocess.run([*MPIBENCH, "run", str(big), "--no-isolate"], check=True,
                   capture_output=True)
    failed = mb.create_project(folder / "failed", mb.Grid(
        [mb.Task("t", X=np.zeros((20, 1)), y=np.arange(20.0))],
        [mb.DebugLearner(p_error=1.0)], [KFold(3)]))
    subprocess.run([*MPIBENCH, "run", str(failed)], check=True, capture_output=True)
    (folder / "afile").write_text("")
    cases: list[tuple[str, list[str] | str, int | None]] = [
        ("Task(y=None)", python_input("mb.Task('t', X=np.zeros((3, 1)), y=None)"), None),
        ("Task(X=None)", python_input("mb.Task('t', X=None, y=np.zeros(3))"), None),
        ("create_project into a file",
         python_input(f"mb.create_project({str(folder / 'afile')!r}, mb.demo_grid())"), None),
        ("KFold with groups", python_input(
            "t = mb.Task('t', X=np.zeros((20, 1)), y=np.arange(20.0), groups=np.arange(20) // 4)\n"
            "from sklearn.model_selection import KFold\n"
            "mb.Grid([t], [mb.DebugLearner()], [KFold(3)]).job_table()"), None),
        ("SOAK folds=50 on 30 rows", python_input(
            "t = mb.Task('t', X=np.zeros((30, 1)), y=np.arange(30.0))\n"
            "mb.Grid([t], [mb.DebugLearner()], [mb.SameOtherSizesCV(folds=50)]).job_table()"),
         None),
        ("scorer named 'status'", python_input(
            "t = mb.Task('t', X=np.zeros((30, 1)), y=np.arange(30.0))\n"
            "mb.Grid([t], [mb.DebugLearner()], scoring={'status': 'rmse'})"), None),
        ("run a missing project", [*MPIBENCH, "run", str(folder / "nothing")], 2),
        ("run a file", [*MPIBENCH, "run", str(folder / "afile")], 2),
        ("status of a file", [*MPIBENCH, "status", str(folder / "afile")], None),
        ("report into a missing folder",
         [*MPIBENCH, "report", str(demo), "-o", str(folder / "no" / "r.html")], 1),
        ("results | head", f"{' '.join(MPIBENCH)} results {big} | head -c 10", 0),
        ("status | head", f"{' '.join(MPIBENCH)} status {big} | head -c 10", 0),
        ("--timeout with --no-isolate",
         [*MPIBENCH, "run", str(demo), "--no-isolate", "--timeout", "5"], 2),
        ("--chunk-size -1", [*MPIBENCH, "run", str(demo), "--chunk-size", "-1"], 2),
        ("--retry bogus", [*MPIBENCH, "run", str(demo), "--retry", "bogus"], 2),
        ("plot scores, every split failed",
         [*MPIBENCH, "plot", str(failed), "scores", "-o", str(folder / "s.png")], 2),
        ("report, every split failed",
         [*MPIBENCH, "report", str(failed), "-o", str(folder / "f.html")], 0),
        ("plot cd with one learner",
         [*MPIBENCH, "plot", str(failed), "cd", "-o", str(folder / "cd.png")], 2),
    ]
    cases += damaged_projects(folder)
    return cases


def damaged_projects(folder: Path) -> list[tuple[str, list[str] | str, int | None]]:
    """Projects damaged on disk, one per case, each with the command that meets it."""
    made = {}
    for name in ("stale", "garbled", "stopdir", "escape", "gridbit", "resultbit",
                 "header", "linked", "truncated"):
        made[name] = mb.create_demo(folder / name)
    for name in ("resultbit", "header"):
        subprocess.run([*MPIBENCH, "run", str(made[name])], check=True, capture_output=True)
    (made["stale"] / "run.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": 2**22 + 1, "start_time": 0}))
    (made["garbled"] / "run.lock").write_bytes(b"\x00garbage")
    os.utime(made["garbled"] / "run.lock", (0, 0))
    (made["stopdir"] / "stop.request").mkdir()
    (made["escape"] / "stop.request").write_bytes(b"me \x1b[31mred\x07")
    flip(made["gridbit"] / "grid.h5", "packed/0")
    flip(made["resultbit"] / "results.h5", "splits/rmse")
    journal = made["header"] / "results.journal"
    data = bytearray(journal.read_bytes())
    data[40] ^= 0xFF
    journal.write_bytes(bytes(data))
    (folder / "elsewhere").mkdir()
    (made["linked"] / "logs").symlink_to(folder / "elsewhere")
    grid_file = made["truncated"] / "grid.h5"
    grid_file.write_bytes(grid_file.read_bytes()[:4000])
    run = [*MPIBENCH, "run"]
    return [
        ("a stale lock (dead pid)", [*run, str(made["stale"])], 0),
        ("a garbled lock", [*run, str(made["garbled"])], 0),
        ("a stop.request directory", [*run, str(made["stopdir"])], 0),
        ("stop.request with escape codes", [*run, str(made["escape"])], 0),
        ("a flipped bit in grid.h5 data", [*run, str(made["gridbit"])], 2),
        ("a flipped bit in results.h5", [*MPIBENCH, "results", str(made["resultbit"])],
         None),
        ("a damaged journal header", [*run, str(made["header"])], 2),
        ("logs/ a symbolic link", [*run, str(made["linked"]), "--log-splits"], 2),
        ("a truncated grid.h5", [*run, str(made["truncated"])], 2),
    ]


def flip(path: Path, dataset: str) -> None:
    import h5py

    with h5py.File(path, "r") as h5:
        item = h5[dataset]
        offset = item.id.get_offset() if item.chunks is None else \
            item.id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset + 3)
        byte = handle.read(1)[0]
        handle.seek(offset + 3)
        handle.write(bytes([byte ^ 1]))


def inputs(folder: Path) -> None:
    rows, one_line = [], 0
    for what, command, expected in bad_inputs(folder):
        done = subprocess.run(command, shell=isinstance(command, str), capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        code_ok = done.returncode != 0 if expected is None else done.returncode == expected
        if "\n" in done.stderr.strip() and "error" in done.stderr.lower():
            code_ok = code_ok and done.stderr.lower().count("error:") <= 1
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        clean = code_ok and "Traceback" not in done.stderr and len(errors) <= 1
        one_line += clean
        shown = (errors[0] if errors else done.stderr.strip().splitlines()[-1:] or [""])
        text = (shown if isinstance(shown, str) else shown[0])[:110].replace("|", "/")
        rows.append((what, done.returncode, "yes" if clean else "NO", text))
    print("| bad input | exit | one line, no traceback | what it said |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    print(f"\n{one_line} of {len(rows)} bad inputs gave the expected exit code and at most "
          "one line, no traceback")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="both", choices=("kills", "inputs", "both"))
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        if args.what in ("inputs", "both"):
            inputs(Path(folder))
        if args.what in ("kills", "both"):
            kills(args.kills, Path(folder))


if __name__ == "__main__":
    main()
