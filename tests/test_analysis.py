"""p-values against scipy, figures, the HTML report, and test mode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mpi_helpers import run_mpibench
from scipy import stats

import mpibench as mb
from mpibench.cli import main


def score_table(same, other, all_=None, *, task="t", subset="A", learner="L"):
    """A results-like table: one row per fold and train subset."""
    rows = []
    for kind, values in (("same", same), ("other", other), ("all", all_)):
        for fold, value in enumerate(values or [], start=1):
            rows.append({"task": task, "test_subset": subset, "learner": learner,
                         "train_subsets": kind, "test_fold": fold, "seed": 1, "groups": 10,
                         "n_train_groups": 10, "status": "ok", "rmse": value})
    return pd.DataFrame(rows)


def test_pvalue_matches_scipy():
    same, other, all_ = [1.0, 1.2, 0.9, 1.1], [2.0, 2.5, 1.7, 2.2], [1.1, 1.0, 1.0, 1.3]
    result = mb.pvalue(score_table(same, other, all_), "rmse")
    rows = result.pvalues.set_index("comparison")
    for name, values in (("other-same", other), ("all-same", all_)):
        row = rows.loc[name]
        assert row["p_paired"] == pytest.approx(stats.ttest_rel(values, same).pvalue)
        assert row["p_unpaired"] == pytest.approx(
            stats.ttest_ind(values, same, equal_var=False).pvalue)
        assert row["mean_diff"] == pytest.approx(np.mean(values) - np.mean(same))
        assert row["same_mean"] == pytest.approx(np.mean(same))
        assert row["compare_mean"] == pytest.approx(np.mean(values))
        assert row["n"] == 4
    stat = result.stats.set_index("train_subsets").loc["other"]
    assert stat["mean"] == pytest.approx(np.mean(other))
    assert stat["sd"] == pytest.approx(np.std(other, ddof=1)) and stat["n"] == 4
    assert stat["label"] == f"{np.mean(other):.3f} ± {np.std(other, ddof=1):.3f}"


def test_downsampled_rows_are_left_out_and_failed_ones_show():
    table = score_table([1.0, 1.2, 0.9], [2.0, 2.5, 1.7])
    noise = table.assign(n_train_groups=5, rmse=100.0)
    plain = mb.pvalue(table, "rmse").pvalues
    pd.testing.assert_frame_equal(plain, mb.pvalue(pd.concat([table, noise]), "rmse").pvalues)
    failed = table.assign(status="error", rmse=np.nan, test_fold=table["test_fold"] + 10)
    mixed = mb.pvalue(pd.concat([table, failed]), "rmse").pvalues.iloc[0]
    assert mixed["n"] == 6 and np.isnan(mixed["same_mean"]) and np.isnan(mixed["compare_mean"])
    assert mixed["p_paired"] == pytest.approx(plain["p_paired"].iloc[0])  # complete pairs


@pytest.mark.parametrize(("same", "other", "why"), [
    ([1.0], [2.0], "fewer than 2 pairs"),
    ([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], "constant differences"),
])
def test_paired_p_value_is_nan_where_r_fails(same, other, why):
    row = mb.pvalue(score_table(same, other), "rmse").pvalues.iloc[0]
    assert np.isnan(row["p_paired"]), why
    assert row["label"] == "P = NA"
    assert np.isnan(row["mean_diff"]), why  # estimate and p-value are NA together (M2)


def test_welch_survives_where_the_paired_test_fails():
    row = mb.pvalue(score_table([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]), "rmse").pvalues.iloc[0]
    assert row["p_unpaired"] == pytest.approx(
        stats.ttest_ind([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], equal_var=False).pvalue)


def test_pvalue_needs_same_and_other():
    table = score_table([1.0, 2.0], [1.0, 2.0]).query("train_subsets == 'same'")
    with pytest.raises(mb.MpibenchError, match="compares train subsets"):
        mb.pvalue(table, "rmse")


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory):
    project = mb.create_project(tmp_path_factory.mktemp("a") / "demo", mb.demo_grid(sizes=0))
    assert mb.run(project, progress_every=0, isolate=False) == 0
    return project, mb.read_results(project)


def test_pvalue_on_the_demo_finds_same_beats_other_for_impossible(demo_results):
    _, results = demo_results
    result = mb.pvalue(results, "rmse")
    assert len(result.stats) == 24 and len(result.pvalues) == 16
    assert set(result.pvalues["n"]) == {3}
    impossible = result.pvalues.query("task == 'impossible' and comparison == 'other-same'")
    assert (impossible["mean_diff"] > 0).all()


def test_pvalue_downsample_has_both_panels(demo_results):
    _, results = demo_results
    result = mb.pvalue_downsample(results, "rmse")
    assert set(result.pvalues["panel"]) == {"full size", "same size"}
    same_size = result.stats.query("panel == 'same size'")
    assert set(same_size["n_train_groups"]) == {26}
    assert set(same_size["train_subsets"]) == {"same", "other", "all"}


def test_figures_have_the_expected_panels_and_formats(demo_results, tmp_path):
    _, results = demo_results
    figure = mb.plot_pvalue(mb.pvalue(results, "rmse"), tmp_path / "p.png")
    assert len(figure.axes) == 2 * 4
    titles = {ax.get_title() for ax in figure.axes}
    assert "task: impossible\ntest_subset: Bob" in titles
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == [
        "all", "all-same", "same", "other-same", "other"]
    timeline = mb.plot_timeline(results, tmp_path / "t.svg")
    assert [t.get_text() for t in timeline.axes[0].get_yticklabels()] == ["rank 0"]
    assert len(timeline.axes[0].collections) == 2  # one set of segments per learner
    assert len(mb.plot_scores(results, "mae", tmp_path / "s.pdf").axes) == 4
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "t.svg").read_bytes()[:500]
    assert (tmp_path / "s.pdf").read_bytes()[:4] == b"%PDF"


def test_report_holds_summary_tables_and_figures(demo_results, tmp_path):
    project, _ = demo_results
    assert main(["report", str(project), "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    for needle in ("<h2>Run</h2>", "efficiency", "<h2>Ranks</h2>", "None: every split is ok",
                   "Same vs other vs all: rmse", "other-same", "p_paired"):
        assert needle in text, needle
    assert text.count("data:image/png;base64,") == 3
    summary = mb.run_summary(mb.read_results(project))
    assert 0 < summary["efficiency"] <= 1.0 and summary["n_workers"] == 1


def test_cli_plot_and_results_formats(demo_results, tmp_path, capsys):
    project, _ = demo_results
    for kind in ("pvalue", "timeline", "scores"):
        assert main(["plot", str(project), kind, "-o", str(tmp_path / f"{kind}.png")]) == 0
        assert (tmp_path / f"{kind}.png").stat().st_size > 1000
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert main(["results", str(project), "-o", str(tmp_path / "r.parquet")]) == 2
        assert "pip install 'mpibench[parquet]'" in capsys.readouterr().err


@pytest.mark.mpi
def test_test_mode_runs_first_splits_on_small_data(tmp_path):
    project = mb.create_demo(tmp_path / "demo")
    done = run_mpibench(3, "run", project, "--test")
    assert done.returncode == 0, done.stderr
    results = mb.read_results(project / "test")
    assert len(results) == 4 and (results["iteration"] == 1).all()
    assert (results["n_train"] + results["n_test"] <= 20).all()  # 10 rows per person
    assert (results["status"] == "ok").all()
    assert not (project / "results.h5").exists()
    assert "test mode" in done.stderr
    again = run_mpibench(None, "run", project, "--test")
    assert again.returncode == 0 and "this run: 0 " in again.stderr


# -- issue 16: the same answers as mlr3resampling (expected values from R) ---------


def comparison(result, name: str) -> pd.Series:
    return result.pvalues.set_index("comparison").loc[name]


def test_m2_one_fold_gives_no_estimate():
    result = mb.pvalue(score_table([1.0], [2.0], [1.5]), "rmse")
    for name in ("other-same", "all-same"):
        assert np.isnan(comparison(result, name)["mean_diff"])
        assert np.isnan(comparison(result, name)["p_paired"])


@pytest.mark.parametrize("same", [[1.0, 2.0], [1.0, 1.0 + 1e-16]])
def test_m2_constant_or_near_constant_differences_give_no_estimate(same):
    other = [v + 0.5 for v in same]
    row = mb.pvalue(score_table(same, other), "rmse").pvalues.iloc[0]
    assert np.isnan(row["mean_diff"]) and np.isnan(row["p_paired"])


def test_m3_a_missing_all_row_counts_and_makes_the_mean_na():
    table = score_table([1.0, 1.2, 0.9], [2.0, 2.5, 1.7], [1.5, 1.9])  # no fold 3 'all'
    row = comparison(mb.pvalue(table, "rmse"), "all-same")
    assert row["n"] == 3 and np.isnan(row["compare_mean"])
    assert row["same_mean"] == pytest.approx(np.mean([1.0, 1.2, 0.9]))
    assert row["mean_diff"] == pytest.approx(np.mean([0.5, 0.7]))  # complete pairs


def test_m3_a_missing_same_row_counts_and_makes_same_mean_na():
    table = score_table([1.0, 1.2, 0.9], [2.0, 2.5, 1.7])
    table = table.drop(index=table.index[(table["train_subsets"] == "same")
                                         & (table["test_fold"] == 2)])
    row = comparison(mb.pvalue(table, "rmse"), "other-same")
    assert row["n"] == 3 and np.isnan(row["same_mean"])


def test_m3_a_nan_score_counts_in_n_and_makes_mean_and_sd_na():
    result = mb.pvalue(score_table([1.0, 1.2, 0.9], [2.0, np.nan, 1.7]), "rmse")
    row = comparison(result, "other-same")
    assert row["n"] == 3 and np.isnan(row["compare_mean"])
    stat = result.stats.set_index("train_subsets").loc["other"]
    assert stat["n"] == 3 and np.isnan(stat["mean"]) and np.isnan(stat["sd"])
    assert stat["label"] == "NA ± NA"


def test_m3_a_task_without_all_rows_gets_a_row_with_n_and_no_estimate():
    with_all = score_table([1.0, 1.2, 0.9], [2.0, 2.5, 1.7], [1.5, 1.9, 1.2], task="t1")
    without = score_table([1.0, 1.2, 0.9], [2.0, 2.5, 1.7], task="t2")
    pvalues = mb.pvalue(pd.concat([with_all, without]), "rmse").pvalues
    row = pvalues.query("task == 't2' and comparison == 'all-same'").iloc[0]
    assert row["n"] == 3 and np.isnan(row["mean_diff"]) and np.isnan(row["compare_mean"])


def test_m4_pvalue_downsample_refuses_results_without_down_sampling():
    with pytest.raises(mb.MpibenchError, match=r"no down-sampled splits .*sizes=0"):
        mb.pvalue_downsample(score_table([1.0, 1.2, 0.9], [2.0, 2.5, 1.7]), "rmse")


def test_labels_as_r_writes_them():
    result = mb.pvalue(score_table([1.0], [2.0]), "rmse")
    assert result.stats.set_index("train_subsets").loc["same", "label"] == "1.000 ± NA"
    assert result.pvalues["label"].tolist() == ["P = NA"]


def test_two_rows_for_one_cell_are_refused_not_picked():
    table = score_table([1.0, 1.2, 0.9], [2.0, 2.5, 1.7]).drop(columns="seed")
    with pytest.raises(mb.MpibenchError, match="Add a 'seed' column"):
        mb.pvalue(pd.concat([table, table.assign(rmse=table["rmse"] + 1)]), "rmse")


def test_a_table_without_n_train_groups_is_one_line():
    table = score_table([1.0, 1.2], [2.0, 2.5]).drop(columns="n_train_groups")
    with pytest.raises(mb.MpibenchError, match="'n_train_groups'"):
        mb.pvalue(table, "rmse")


def test_full_panel_labels_end_with_the_size(demo_results):
    _, results = demo_results
    full = mb.pvalue_downsample(results, "rmse").stats.query("panel == 'full size'")
    for label, size in zip(full["label"], full["n_train_groups"], strict=True):
        assert label.endswith(f", N = {size}")


def test_mlr3_names_for_r(demo_results, tmp_path):
    project, results = demo_results
    r_table = mb.read_results(project, names="mlr3")
    for column in ("task_id", "learner_id", "test.subset", "train.subsets", "test.fold",
                   "n.train.groups", "groups", "seed", "regr.rmse", "algorithm"):
        assert column in r_table, column
    assert r_table["regr.rmse"].tolist() == results["rmse"].tolist()
    assert main(["results", str(project), "--mlr3", "-o", str(tmp_path / "s.csv")]) == 0
    assert "regr.rmse" in pd.read_csv(tmp_path / "s.csv").columns


def test_the_error_scorer_and_mlr3_measure_ids(tmp_path):
    """``error`` (the misclassification rate) has its own column beside the message
    column; the mlr3 export names as mlr3 measures only scores equal to mlr3measures'."""
    from sklearn.dummy import DummyClassifier
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    task = mb.Task("three", X=X, y=np.digitize(X[:, 0], [-0.5, 0.5]))
    grid = mb.Grid([task], [DecisionTreeClassifier(), DummyClassifier()],
                   [mb.SameOtherSizesCV(folds=3)],
                   scoring=["error", "f1", "auc", "logloss", "accuracy"])
    assert [s.name for s in grid.scorers][:2] == ["error_rate", "f1"]
    project = mb.create_project(tmp_path / "p", grid)
    assert mb.run(project, progress_every=0, isolate=False) == 0
    results = mb.read_results(project)
    assert (results["status"] == "ok").all() and (results["error"] == "").all()
    assert np.allclose(results["error_rate"], 1 - results["accuracy"])
    r_table = mb.read_results(project, names="mlr3")
    measures = [c for c in r_table.columns if c.startswith(("classif.", "regr."))]
    assert measures == ["classif.ce", "classif.acc"]  # what R's pvalue() takes first
    assert {"error", "f1", "auc", "logloss"} <= set(r_table.columns)
    with pytest.raises(mb.MpibenchError, match="Scorer name 'status' is a column"):
        mb.Grid([task], [DummyClassifier()], scoring={"status": "accuracy"})


def test_a_report_without_comparisons_says_why(tmp_path):
    project = mb.create_project(tmp_path / "same", mb.demo_grid(),
                                select_jobs=lambda jobs: jobs[jobs["train_subsets"] == "same"])
    assert mb.run(project, progress_every=0, isolate=False) == 0
    text = mb.write_report(project, tmp_path / "r.html").read_text()
    assert "No p-values yet" in text and "'same' beside 'other' or 'all'" in text


def test_test_mode_on_a_down_sampling_grid_takes_full_size_splits(tmp_path):
    project = mb.create_project(tmp_path / "sizes", mb.demo_grid(sizes=2))
    done = run_mpibench(None, "run", project, "--test", "--progress-every", "0")
    assert done.returncode == 0, done.stderr
    results = mb.read_results(project / "test")
    assert len(results) == 4 and (results["status"] == "ok").all()
    assert (results["n_train_groups"] == results["groups"]).all()
    assert (results["n_train"] > 2).all()


def _rendered(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas


def test_pvalue_labels_stay_inside_their_panels(demo_results):
    _, results = demo_results
    figure = mb.plot_pvalue(mb.pvalue(results, "rmse"))
    canvas = _rendered(figure)
    renderer = canvas.get_renderer()
    for ax in figure.axes:
        box = ax.get_window_extent(renderer)
        for text in ax.texts:
            extent = text.get_window_extent(renderer)
            assert extent.x0 >= box.x0 - 2 and extent.x1 <= box.x1 + 2, text.get_text()


def test_many_panels_wrap_and_many_splits_do_not_blacken_the_timeline():
    rng = np.random.default_rng(0)
    rows = []
    for task in range(6):
        for subset in ("A", "B"):
            for kind in ("same", "other"):
                for fold in range(3):
                    rows.append({"task": f"t{task}", "test_subset": subset, "learner": "L",
                                 "test_fold": fold, "train_subsets": kind,
                                 "resampling": "soak", "groups": 5,
                                 "n_train_groups": 5, "status": "ok",
                                 "rmse": rng.normal()})
    scores = mb.plot_scores(pd.DataFrame(rows), "rmse")
    assert len([ax for ax in scores.axes if ax.get_visible()]) == 12
    assert scores.get_size_inches()[0] <= 3.2 * 4 + 0.1
    starts = np.sort(rng.uniform(0, 100, 300))
    timeline = pd.DataFrame({"rank": np.arange(300) % 2 + 1, "start_time": starts,
                             "end_time": starts + 0.3, "learner": "L", "status": "ok"})
    figure = mb.plot_timeline(timeline)
    canvas = _rendered(figure)
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    box = figure.axes[0].get_window_extent(canvas.get_renderer())
    height = pixels.shape[0]
    inside = pixels[int(height - box.y1):int(height - box.y0), int(box.x0):int(box.x1)]
    assert (inside.max(axis=-1) < 60).mean() < 0.05  # not a black smear


def test_many_panels_and_splits_stay_bounded():
    rng = np.random.default_rng(1)
    n = 60_000  # more splits than the timeline draws one by one
    starts = np.sort(rng.uniform(0, 1000, n))
    long = np.zeros(n, bool)
    long[::20_000] = True  # a few splits longer than a bin stay whole
    timeline = pd.DataFrame({"rank": np.arange(n) % 4 + 1, "start_time": starts,
                             "end_time": starts + np.where(long, 50.0, 0.01),
                             "learner": np.where(np.arange(n) % 3, "a", "b"),
                             "status": np.where(np.arange(n) % 997, "ok", "error")})
    figure = mb.plot_timeline(timeline)
    ax = figure.axes[0]
    segments = sum(len(c.get_segments()) for c in ax.collections)
    assert segments <= 4 * 1000 + long.sum()
    assert "busy time per 1000th" in ax.get_title()
    width, height = figure.get_size_inches() * 150
    assert width < 4000 and height < 4000
    rows = [{"task": f"t{t}", "test_subset": "", "learner": "L", "train_subsets": "",
             "resampling": "cv", "groups": 5, "n_train_groups": 5, "status": "ok",
             "rmse": 1.0} for t in range(500)]
    scores = mb.plot_scores(pd.DataFrame(rows), "rmse")
    assert len([a for a in scores.axes if a.get_visible()]) == 24
    assert max(scores.get_size_inches()) * 150 < 4000


def test_a_report_of_many_tasks_ranks_learners_across_them(tmp_path):
    import re
    from base64 import b64decode

    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(2)
    tasks = []
    for t in range(30):
        X = rng.normal(size=(30, 2))
        tasks.append(mb.Task(f"t{t:02d}", X=X, y=X[:, 0] * 3 + rng.normal(0, 0.1, 30)))
    learners = {"mean": DummyRegressor(), "linear": LinearRegression(),
                "tree": DecisionTreeRegressor(max_depth=2)}
    grid = mb.Grid(tasks, learners, resamplings=[KFold(3)], scoring=["rmse"])
    path = tmp_path / "many"
    assert mb.run(grid, path, progress_every=0, isolate=False) == 0
    text = mb.write_report(path, tmp_path / "report.html").read_text()
    assert "Learners across tasks: rmse" in text and "Friedman chi-square" in text
    assert "Learner against learner" in text and text.count("<tr><td>t") >= 30
    assert "30 task panels" in text  # no per-task scores figure past 24 panels
    test = mb.friedman(mb.read_results(path), "rmse")
    assert list(test.mean_ranks.index) == ["linear", "tree", "mean"]
    assert test.n_tasks == 30 and test.pvalue < 1e-6
    from PIL import Image

    for data in re.findall(r"base64,([A-Za-z0-9+/=]+)", text):
        width, height = Image.open(__import__("io").BytesIO(b64decode(data))).size
        assert width < 4000 and height < 4000
    out = tmp_path / "cd.png"
    assert main(["plot", str(path), "cd", "-o", str(out)]) == 0 and out.stat().st_size


def test_reports_of_a_mixed_grid_and_of_every_split_failed(tmp_path):
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60),
                   subset=np.repeat(["A", "B"], 30))
    mixed = mb.create_project(tmp_path / "mixed", mb.Grid(
        [task], {"mean": mb.DebugLearner(), "slow": mb.DebugLearner(sleep_fit=1e-4)},
        {"soak": mb.SameOtherSizesCV(), "kf": KFold(3)}))
    assert mb.run(mixed, progress_every=0, isolate=False) == 0
    results = mb.read_results(mixed)
    test = mb.pvalue(results, "rmse")
    assert set(test.stats["train_subsets"]) == {"same", "other", "all"}
    assert main(["plot", str(mixed), "pvalue", "-o", str(tmp_path / "p.png")]) == 0
    assert main(["report", str(mixed), "-o", str(tmp_path / "m.html")]) == 0
    failed = mb.create_project(tmp_path / "failed", mb.Grid(
        [task], {"bad": mb.DebugLearner(p_error=1.0)}, [KFold(3)]))
    assert mb.run(failed, progress_every=0, isolate=False) == 0
    assert main(["report", str(failed), "-o", str(tmp_path / "f.html")]) == 0
    assert "no split has status ok" in (tmp_path / "f.html").read_text()
    with pytest.raises(mb.MpibenchError, match="No split with status ok"):
        mb.plot_scores(mb.read_results(failed), "rmse")
