"""Learning-curve plots: the aggregation math on hand-made numbers, grouping seeds of a config, and the command."""
import numpy as np
import pytest

from tinydqn.cli import main
from tinydqn.config import make_config
from tinydqn.errors import UserError
from tinydqn.plot import align, bootstrap_ci, group_runs, iqm, plot_curves, plot_runs, read_curve
from tinydqn.train import train

pytestmark = pytest.mark.cpu_stage  # what these tests check does not depend on the device

pytest.importorskip("matplotlib")
CONFIG = make_config("CartPole-v1", total_timesteps=300, learning_starts=50, train_freq=4, gradient_steps=1,
                     batch_size=16, net_arch=(16,), eval_freq=100, eval_episodes=2, checkpoint_freq=0)


def test_iqm_drops_the_outer_quarters():
  assert iqm(np.array([1.0, 2, 4, 8, 16, 32, 64, 128])) == 15.0  # n=8: drop 2 each side, mean of 4, 8, 16, 32
  assert iqm(np.array([5.0, 1, 3, 100, 2])) == pytest.approx(10 / 3)  # n=5: drop 1 each side
  assert iqm(np.array([3.0, 7])) == 5.0  # n < 4: nothing dropped
  per_point = iqm(np.array([[1.0, 10], [2, 20], [3, 30], [400, 40]]), axis=0)  # runs x points
  np.testing.assert_allclose(per_point, [2.5, 25.0])


def test_bootstrap_band():
  same = np.tile([1.0, 2.0, 3.0], (5, 1))
  lo, hi = bootstrap_ci(same, "iqm")
  np.testing.assert_array_equal(lo, same[0])
  np.testing.assert_array_equal(hi, same[0])
  runs = np.array([[0.0], [10.0], [20.0], [30.0]])
  lo, hi = bootstrap_ci(runs, "mean", reps=4000)
  assert 0 < lo[0] < 15 < hi[0] < 30  # brackets the mean, narrower than the range of the runs
  lo2, hi2 = bootstrap_ci(runs, "mean", reps=4000, level=0.5)
  assert lo[0] < lo2[0] < hi2[0] < hi[0]


def test_align_interpolates_runs_logged_at_different_x():
  same = [(np.array([0.0, 10, 20]), np.array([1.0, 2, 3])), (np.array([0.0, 10, 20]), np.array([3.0, 4, 5]))]
  grid, values = align(same)
  np.testing.assert_array_equal(grid, [0, 10, 20])
  np.testing.assert_array_equal(values, [[1, 2, 3], [3, 4, 5]])
  grid, values = align([(np.array([0.0, 10]), np.array([0.0, 10])), (np.array([2.0, 6, 12]), np.array([0.0, 4, 4]))],
                       points=3)
  np.testing.assert_allclose(grid, [2, 6, 10])  # only the range both runs cover
  np.testing.assert_allclose(values, [[2, 6, 10], [0, 4, 4]])


def drawn_figure(monkeypatch):
  """The Figure that plot_curves saves (it is written to disk as well), to read what was drawn on it."""
  from matplotlib.figure import Figure
  saved, savefig = [], Figure.savefig
  monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **kw: (saved.append(fig), savefig(fig, *a, **kw))[1])
  return saved


def test_plot_curves_draws_labelled_groups_a_band_for_several_runs(tmp_path, monkeypatch):
  saved = drawn_figure(monkeypatch)
  x = np.array([0.0, 10, 20])
  many = [(x, np.array([1.0, 2, 3]) * k) for k in range(1, 6)]
  one = [(np.array([0.0, 5, 20]), np.array([4.0, 4, 4]))]
  out = plot_curves({"ours": many, "theirs": one}, tmp_path / "sub" / "c.png", xlabel="steps", ylabel="return",
                    title="T")
  assert out == tmp_path / "sub" / "c.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  ax, = saved[0].axes
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours (5 runs)", "theirs (1 run)"]
  ours, theirs = ax.lines
  np.testing.assert_allclose(ours.get_ydata(), [3, 6, 9])  # IQM of 1..5 times the curve: the middle three, 2..4
  np.testing.assert_allclose(theirs.get_xdata(), [0, 5, 20])
  assert len(ax.collections) == 1  # the band of "ours"; a single run has none
  assert ax.get_ylabel() == "return, iqm (95% bootstrap CI)" and ax.get_xlabel() == "steps" and ax.get_title() == "T"


def test_plot_curves_without_a_band_says_no_ci(tmp_path, monkeypatch):
  saved = drawn_figure(monkeypatch)
  plot_curves({"a": [([1, 2], [3, 4])], "b": [([1, 2], [5, 6])]}, tmp_path / "c.png", agg="median")
  ax, = saved[0].axes
  assert ax.get_ylabel() == "greedy evaluation return, median" and not ax.collections
  assert ax.get_xlabel() == "environment steps"


@pytest.mark.parametrize("groups, agg, message", [
  ({}, "iqm", "no curves to plot"),
  ({"a": []}, "iqm", "'a' has no runs"),
  ({"a": [([1, 2, 3], [1, 2])]}, "iqm", "a run of 'a' has 3 x and 2 y values"),
  ({"a": [([], [])]}, "iqm", "a run of 'a' has 0 x and 0 y values"),
  ({"a": [([0, 1], [1, 2]), ([2, 3], [1, 2])]}, "iqm", "share no range"),
  ({"a": [([0, 1], [1, 2])]}, "max", "unknown aggregate 'max'"),
])
def test_plot_curves_rejects_bad_input(tmp_path, groups, agg, message):
  with pytest.raises(UserError, match=message): plot_curves(groups, tmp_path / "c.png", agg=agg)
  assert not (tmp_path / "c.png").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("plot")
  return [train(CONFIG.replace(seed=s, learning_rate=lr), root / f"lr{lr}_s{s}", progress=False).run_dir
          for lr, s in [(1e-3, 0), (1e-3, 1), (5e-4, 0)]]


def test_seeds_of_a_config_are_grouped(runs):
  groups = group_runs(runs)
  assert groups == {"CartPole-v1 learning_rate=0.001": runs[:2], "CartPole-v1 learning_rate=0.0005": runs[2:]}
  x, y = read_curve(runs[0])
  assert list(x) == [100, 200, 300] and len(y) == 3


def test_labels_name_the_curves_instead_of_the_configs(runs, tmp_path):
  assert group_runs(runs, ["DQN", "rainbow", "DQN"]) == {"DQN": [runs[0], runs[2]], "rainbow": [runs[1]]}
  with pytest.raises(UserError, match="2 labels for 3 run directories"): group_runs(runs, ["a", "b"])
  out = plot_runs(runs, tmp_path / "labelled.png", labels=["a", "a", "b"])
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flags", [[], ["--metric", "train", "--x", "time", "--agg", "median"]])
def test_plot_writes_an_image(runs, tmp_path, capsys, flags):
  out = tmp_path / "sub" / "curves.png"
  assert main(["plot", *map(str, runs), "-o", str(out), *flags]) == 0
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
  assert str(out) in capsys.readouterr().out


def one_line_error(capsys, argv) -> str:
  assert main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("tinydqn: error: ")
  return err[0]


def test_a_folder_that_is_not_a_run_is_named(runs, tmp_path, capsys):
  (tmp_path / "notes").mkdir()
  out = tmp_path / "c.png"
  assert str(tmp_path / "notes") in one_line_error(capsys, ["plot", str(runs[0]), str(tmp_path / "notes"), "-o", str(out)])
  assert not out.exists()


def test_a_run_without_evaluations_says_so(tmp_path, capsys):
  run = train(CONFIG.replace(total_timesteps=100, eval_freq=0, stop_at_return=None), tmp_path / "r", progress=False).run_dir
  (run / "eval.csv").write_text("step,mean_return,std_return,min_return,max_return,time_s,train_time_s\n")
  assert "no rows" in one_line_error(capsys, ["plot", str(run), "-o", str(tmp_path / "c.png")])


def test_missing_matplotlib_names_the_extra(runs, tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)  # import fails as if not installed
  assert "pip install 'tinydqn[plot]'" in one_line_error(capsys, ["plot", str(runs[0]), "-o", str(tmp_path / "c.png")])
