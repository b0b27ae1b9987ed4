"""TensorBoard event files beside the CSV logs, under the metric names CleanRL and SB3 users know.

Written to RUN_DIR/tb/ whenever tensorboardX is installed (`pip install 'tinydqn[tensorboard]'`); set
TINYDQN_TENSORBOARD=0 to skip them. The CSV files stay the source of truth: plots and tests read those.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

# CSV column -> TensorBoard tag, for the rows of metrics.csv and of eval.csv.
EPISODE_TAGS = {"episodic_return": "charts/episodic_return", "episodic_length": "charts/episodic_length",
                "epsilon": "charts/epsilon", "sps": "charts/SPS", "loss": "losses/td_loss", "q_mean": "losses/q_values"}
EVAL_TAGS = {"mean_return": "eval/mean_return", "std_return": "eval/std_return"}


class TensorBoardLog:
  """Mirrors CSV rows into scalars at global step = env step; does nothing when disabled or not installed."""

  def __init__(self, logdir: Path, purge_step: int | None = None):
    """`purge_step`: on resume, the first step after the snapshot. TensorBoard then hides the events a killed run
    wrote from that step on, as metrics.csv drops those rows, so the resumed run's curves are not doubled."""
    self._writer = None
    if os.environ.get("TINYDQN_TENSORBOARD", "1") == "0": return
    try:
      from tensorboardX import SummaryWriter
    except ImportError:
      return
    # Event files are named by the second they were opened: a resume within the same second would overwrite the
    # first file without a suffix of its own. TensorBoard reads the files in name order, so the count keeps it.
    previous = len(list(logdir.glob("events.out.tfevents.*"))) if logdir.is_dir() else 0
    self._writer = SummaryWriter(str(logdir), purge_step=purge_step, filename_suffix=f".{previous}" if previous else "")

  def _write(self, row: dict[str, Any], tags: dict[str, str]) -> None:
    if self._writer is None: return
    for column, tag in tags.items():
      value = row.get(column)
      if value is not None and math.isfinite(value): self._writer.add_scalar(tag, value, row["step"])  # no loss yet: NaN
    self._writer.flush()  # per row, like the CSV files: a killed run keeps what it logged

  def episode(self, row: dict[str, Any]) -> None: self._write(row, EPISODE_TAGS)
  def eval(self, row: dict[str, Any]) -> None: self._write(row, EVAL_TAGS)

  def close(self) -> None:
    if self._writer is not None: self._writer.close()
