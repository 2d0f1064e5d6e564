"""The ``mpibench`` command: parses arguments and calls one library function each."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any

from .errors import MpibenchError, one_line_warning


def _run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .engine.options import RENAMED, RunOptions
    from .engine.runner import run

    names = [f.name for f in fields(RunOptions)] + list(RENAMED)
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return run(args.project, options=RunOptions.from_arguments(given, spelling="cli"))


def _demo(args: argparse.Namespace) -> int:
    from .demo import create_demo
    from .store.paths import ProjectPaths

    existed = ProjectPaths(args.project).grid.exists()
    path = create_demo(args.project)
    done = "The demo project is already" if existed else "Created the demo project"
    print(f"{done} at {path} (72 splits). Run it with:\n"
          f"  mpiexec -n 4 mpibench run {path}")
    return 0


def _energy(args: argparse.Namespace) -> Any:
    from dataclasses import fields

    from .energy import EnergyModel

    return EnergyModel(**{f.name: getattr(args, f.name) for f in fields(EnergyModel)
                          if getattr(args, f.name, None) is not None}, spelling="cli")


def _request(args: argparse.Namespace) -> dict:
    return {"ntasks": args.ntasks, "cpus_per_task": args.cpus_per_task,
            "margin": args.margin, "spelling": "cli"}


def _status(args: argparse.Namespace) -> int:
    import json

    from .analysis.status import project_status

    energy = _energy(args) if args.resources else None  # (bad numbers: before anything)
    status = project_status(args.project)
    if not args.resources:
        print(json.dumps(status.to_dict(), indent=1) if args.json else status.format())
        return 0
    from .analysis.resources import resources_summary, resources_text

    request = _request(args)
    if args.json:
        print(json.dumps({**status.to_dict(), "resources": resources_summary(
            args.project, energy, **request)}, indent=1))
    else:
        print(status.format())
        print(resources_text(args.project, energy, **request))
    return 0


def _results(args: argparse.Namespace) -> int:
    from .store.reading import read_results

    frame = read_results(args.project, names="mlr3" if args.mlr3 else "mpibench")
    if args.output and str(args.output).endswith(".parquet"):
        try:
            frame.to_parquet(args.output, index=False)
        except ImportError as exc:
            raise MpibenchError(f"Writing parquet needs pyarrow ({exc}). pip install "
                                "'mpibench[parquet]' (or pyarrow), or write .csv.") from exc
        print(f"Wrote {len(frame)} rows to {args.output}", file=sys.stderr)
    elif args.output:
        frame.to_csv(args.output, index=False)
        print(f"Wrote {len(frame)} rows to {args.output}", file=sys.stderr)
    else:
        frame.to_csv(sys.stdout, index=False)
    return 0


def parse_bytes(text: str) -> int:
    """``"500M"`` -> 524288000 (suffixes K, M, G, T; powers of 1024).

    Examples
    --------
    >>> parse_bytes("2G"), parse_bytes("1024")
    (2147483648, 1024)
    """
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use bytes or a number with K, M, G or T") from None


def _plot(args: argparse.Namespace) -> int:
    from .store.gridfile import GridFile
    from .store.paths import ProjectPaths
    from .store.reading import read_results

    results = read_results(args.project)
    score = args.score or GridFile(ProjectPaths(args.project).grid).scorer_names()[0]
    if args.kind == "timeline":
        from .analysis.plotting import plot_timeline
        from .store.reading import read_ranks

        plot_timeline(results, args.output, ranks=read_ranks(args.project))
    elif args.kind == "scores":
        from .analysis.plotting import plot_scores

        plot_scores(results, score, args.output)
    elif args.kind == "cd":
        from .analysis.plotting import plot_critical_difference
        from .analysis.ranking import critical_difference

        plot_critical_difference(critical_difference(results, score), args.output)
    else:
        from .analysis.plotting import plot_pvalue
        from .analysis.pvalues import pvalue

        plot_pvalue(pvalue(results, score), args.output)
    print(f"Wrote {args.output}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .analysis.report import write_report

    path = write_report(args.project, args.output, score=args.score, energy=_energy(args))
    print(f"Wrote {path}", file=sys.stderr)
    return 0


def _sbatch(args: argparse.Namespace) -> int:
    from .engine.options import RunOptions, batch_run_arguments, take_renamed
    from .slurm import SbatchOptions, submit, write_sbatch

    given = take_renamed(vars(args), "max_attempts", "max_submissions", "cli")
    options = SbatchOptions.from_arguments(given)
    run_options = {f: given[f] for f in RunOptions.__dataclass_fields__ if f in given}
    script = write_sbatch(args.project, options,
                          run_arguments=batch_run_arguments(run_options))
    if args.submit:
        print(f"Submitted {script} as job {submit(script)}")
    else:
        print(script.read_text(), end="")
        print(f"# written to {script}; submit with: sbatch {script}", file=sys.stderr)
    return 0


def _chunk_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1 or 'auto', got {text!r}") from None


def _add_run_options(run: argparse.ArgumentParser, *, passed_on: bool = False) -> None:
    """The options of ``mpibench run``: names, defaults and choices from RunOptions
    (``passed_on``: those ``mpibench sbatch`` writes into its script's run, each
    present in the parsed arguments only when given)."""
    from .engine.options import FALLBACKS, NOT_FOR_BATCH_SCRIPTS, ORDERS, default

    if passed_on:
        run = run.add_argument_group(  # type: ignore[assignment]
            "passed on to the script's `mpibench run`")

    def option(name: str, **kwargs: Any) -> None:
        flag = "--" + name.replace("_", "-")
        if passed_on and name in NOT_FOR_BATCH_SCRIPTS:
            return
        if passed_on:
            kwargs["default"] = argparse.SUPPRESS
            kwargs["help"] = kwargs["help"].replace("%(default)s", str(default(name)))
        elif kwargs.get("action") not in ("store_true", "store_false"):
            kwargs.setdefault("default", default(name))
        run.add_argument(flag, dest=name, **kwargs)

    option("threads", type=int,
           help="BLAS/OpenMP threads per worker (default: SLURM_CPUS_PER_TASK or 1)")
    option("order", choices=ORDERS, help="dispatch order (default: lpt, longest expected "
           "first: train rows x a per-learner rate learned during the run)")
    option("chunk_size", type=_chunk_size, metavar="N|auto",
           help="splits per message (default: auto, about 10 ms of expected work, "
                "shrinking as the run ends; 1 for long splits)")
    option("checkpoint_every", type=float, metavar="SECONDS",
           help="rewrite results.h5 this often during the run (default: %(default)s)")
    option("progress_every", type=float, metavar="SECONDS",
           help="progress line interval on stderr, 0 for none (default: %(default)s)")
    option("grace", type=float, metavar="SECONDS",
           help="after SIGTERM/SIGUSR1/SIGINT, how long splits in flight may finish "
                "(default: %(default)s)")
    option("crash_after", type=int, metavar="N",
           help="record a split as crash once it was in flight in N runs that died "
                "(default: %(default)s)")
    if not passed_on:
        run.add_argument("--max-attempts", dest="max_attempts", type=int, default=None,
                         help=argparse.SUPPRESS)  # the old name of --crash-after
    option("repair", action="store_true",
           help="drop damaged journal records (those splits run again)")
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if passed_on else {}
    run.add_argument("--no-isolate", dest="isolate", action="store_false", **unset,
                     help="run splits inside the worker process (cheaper for tiny splits; "
                          "a crash or hang then ends the job)")
    option("timeout", type=float, metavar="SECONDS",
           help="wall-clock limit per split; status 'timeout'")
    option("kill_grace", type=float, metavar="SECONDS",
           help="a split that timed out or was interrupted is killed at once; the "
                "processes it started get this long between SIGTERM and SIGKILL "
                "(default: %(default)s)")
    option("memory_limit", type=parse_bytes, metavar="BYTES",
           help="memory a split may add, e.g. 500M or 4G; status 'oom'")
    option("time_left", type=float, metavar="SECONDS",
           help="seconds this run may take (default: until SLURM_JOB_END_TIME); near "
                "the end only splits that can finish start, then it exits 3")
    option("escalate", type=float, metavar="FACTOR",
           help="grow a split's --timeout and --memory-limit by FACTOR per earlier "
                "timeout or oom result of it (with --retry timeout,oom; default: "
                "%(default)s)")
    option("recycle_after", type=int, metavar="N",
           help="splits an isolated executor runs before a fresh one replaces it "
                "(default: %(default)s)")
    option("fallback", choices=FALLBACKS,
           help="train a featureless baseline where a learner fails and record its "
                "scores (flagged in the 'fallback' column)")
    option("retry", metavar="STATUS[,STATUS...]",
           help="run again the splits with these statuses (error, timeout, crash, oom, "
                "invalid, ok), with this run's options; earlier attempts are kept as "
                "history")
    option("save_predictions", action="store_true",
           help="keep every split's test-row predictions (and class probabilities) in "
                "results.h5 /predictions")
    option("log_splits", action="store_true",
           help="keep each split's printed output in PROJECT/logs/JOB-ATTEMPT.log "
                "instead of stderr (needs isolation)")
    option("test", action="store_true",
           help="dry run: first split of each task x learner x resampling on small "
                "data, into PROJECT/test/results.h5")


def _add_resource_options(parser: argparse.ArgumentParser, *, request: bool) -> None:
    """The energy model's numbers (and, with ``request``, what the next request is
    for), as flags."""
    from dataclasses import fields

    from .energy import EnergyModel

    group = parser.add_argument_group("energy estimate (Green Algorithms' model)")
    for option in fields(EnergyModel):
        group.add_argument("--" + option.name.replace("_", "-"), type=float, default=None,
                           help=f"default: {option.default}")
    if request:
        group = parser.add_argument_group("the mpibench sbatch line for next time")
        group.add_argument("--ntasks", type=int, help="ranks (default: the last run's)")
        group.add_argument("--cpus-per-task", type=int,
                           help="cores per rank (default: the last run's threads)")
        group.add_argument("--margin", type=float, default=0.25,
                           help="added to time and memory (default: 0.25)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one sub-command per verb)."""
    parser = argparse.ArgumentParser(
        prog="mpibench", description="Run machine-learning benchmark grids as one MPI program."
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"mpibench {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser("run", help="run the splits of PROJECT that have no result yet")
    run.add_argument("project", help="project folder")
    _add_run_options(run)
    run.set_defaults(func=_run)
    demo = verbs.add_parser("demo", help="create the built-in example project")
    demo.add_argument("project", help="project folder to create")
    demo.set_defaults(func=_demo)
    status = verbs.add_parser("status", help="done / failed / in flight / pending, the "
                                             "running run and its ETA (live)")
    status.add_argument("project")
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    status.add_argument("--resources", action="store_true",
                        help="also CPU-hours, GPU-hours and peak memory per learner, the "
                             "energy estimate and the mpibench sbatch line to use next "
                             "time (reads every result)")
    _add_resource_options(status, request=True)
    status.set_defaults(func=_status)
    results = verbs.add_parser("results", help="results as CSV (stdout or -o FILE)")
    results.add_argument("project")
    results.add_argument("-o", "--output", help="file to write: .csv, or .parquet (pyarrow)")
    results.add_argument("--mlr3", action="store_true",
                         help="mlr3resampling's column names (task_id, test.subset, "
                              "regr.rmse, ...), for R's mlr3resampling::pvalue()")
    results.set_defaults(func=_results)
    plot = verbs.add_parser("plot", help="a figure: pvalue, timeline, scores or cd (the "
                            "critical-difference diagram of learners across tasks)")
    plot.add_argument("project")
    plot.add_argument("kind", choices=("pvalue", "timeline", "scores", "cd"))
    plot.add_argument("-o", "--output", required=True,
                      help="image file; the extension picks the format (.png, .svg, .pdf)")
    plot.add_argument("--score", help="score column (default: the first scorer)")
    plot.set_defaults(func=_plot)
    report = verbs.add_parser("report", help="one HTML file: summary, p-values, figures")
    report.add_argument("project")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    report.add_argument("--score", help="score column (default: the first scorer)")
    _add_resource_options(report, request=False)
    report.set_defaults(func=_report)
    sbatch = verbs.add_parser("sbatch", help="write (and --submit) PROJECT/mpibench.sbatch")
    sbatch.add_argument("project")
    from .slurm import sbatch_arguments

    for flag, settings in sbatch_arguments():
        sbatch.add_argument(flag, **settings)
    sbatch.add_argument("--max-attempts", type=int, default=None,
                        help=argparse.SUPPRESS)  # the old name of --max-submissions
    sbatch.add_argument("--submit", action="store_true", help="submit it with sbatch")
    _add_run_options(sbatch, passed_on=True)
    sbatch.set_defaults(func=_sbatch)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpibench`` command; returns the exit code."""
    if argv is None and sys.argv[1:2] == ["run"]:
        from .engine.config import find_modules_in_working_directory
        from .engine.stopping import catch_stop_signals_early

        catch_stop_signals_early()  # before the imports: a stop now still exits 3
        find_modules_in_working_directory()
    args = build_parser().parse_args(argv)
    if argv is None:
        warnings.formatwarning = one_line_warning
    try:
        return args.func(args)
    except MpibenchError as exc:
        if not exc.quiet:
            print(f"mpibench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mpibench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # (``mpibench results PROJECT | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # an output path: a missing folder, a permission, a full disk
        print(f"mpibench: error: {exc.strerror or exc}: {exc.filename or ''}. Check the "
              "path (a missing folder, a file where a folder is due, permissions) or the "
              "free space, and rerun.", file=sys.stderr)
        return 1
