"""Forgetting curves and per-class IoU heatmaps, saved as PNG and PDF.

- Forgetting curves, one figure per (data, protocol): mIoU against the step for the base classes,
  the classes learned before the step, the step's own classes and all seen classes; one line per
  method (per configuration where a method has several), the band is ± one standard deviation
  over seeds. Partial runs are dashed and labelled so, never merged with complete ones.
- Heatmaps, one per run group (data, protocol, method, recipe, config without seed, status):
  class x step, the mean IoU over seeds; blank where a class is not seen yet or has no ground
  truth. They show *which* classes are forgotten, which the means hide.
- Loss curves, one figure per run group: a panel per step, each loss term's per-epoch mean
  against the epoch (mean over seeds, band ± 1 standard deviation), from the records.

The Agg backend is forced: plots are written by batch jobs and tests, never shown.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.report.aggregate import Run  # noqa: E402
from bench.report.formats import method_key, method_label, method_name  # noqa: E402
from bench.report.summary import CONVENTION_TEXT  # noqa: E402

PANELS = (
    ("old", "base classes ({old})"),
    ("step_old", "old classes (learned before the step)"),
    ("step_new", "new classes (the step's own)"),
    ("all", "all seen classes"),
)
ANNOTATE_MAX_CLASSES = 30
DPI = 130


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+=-]+", "-", text).strip("-")


def _save(figure: plt.Figure, path_stem: Path) -> list[Path]:
    paths = [path_stem.with_suffix(".png"), path_stem.with_suffix(".pdf")]
    # A fixed creation date keeps the PDF identical for identical input.
    figure.savefig(paths[0], dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    figure.savefig(paths[1], bbox_inches="tight",
                   metadata={"Creator": None, "Producer": None, "CreationDate": None})
    plt.close(figure)
    return paths


def _line_labels(frame: pd.DataFrame) -> pd.Series:
    """Method name, plus the config hash where one method has several configurations."""
    counts = frame.groupby("method")["setup_hash"].nunique()
    labels = []
    for _, row in frame.iterrows():
        label = method_label(row["method"], row["variant"])
        if counts[row["method"]] > 1:
            label += f" [{row['recipe']}, {row['setup_hash'][:6]}]"
        if row["status"] != "complete":
            label += f" ({row['status']})"
        labels.append(label)
    return pd.Series(labels, index=frame.index)


def frame_protocol_steps(frame: pd.DataFrame) -> list[int]:
    """Every step of the protocol, from the number of steps its runs record."""
    return list(range(int(frame["protocol_steps"].max())))


def _data_note(kind: str, data: str) -> str:
    return {"synthetic": f"{data}, embedded synthetic data",
            "unknown": f"{data}, data set not recorded"}.get(kind, f"{data}, real data")


def forgetting_curves(scores: pd.DataFrame, out: Path, convention: str) -> list[Path]:
    """One figure per (data, protocol) from `summary.scores_table` rows of one convention."""
    scores = scores[scores["convention"] == convention]
    written: list[Path] = []
    for (kind, data, protocol), frame in scores.groupby(["data_kind", "data", "protocol"],
                                                        sort=True):
        frame = frame.copy()
        frame["line"] = _line_labels(frame)
        frame.loc[frame["step"] == 0, "step_new"] = np.nan  # step 0 adds no "new" classes
        order = sorted(frame["line"].unique(),
                       key=lambda label: (method_key(frame.loc[frame["line"] == label,
                                                               "method"].iloc[0]), label))
        palette = dict(zip(order, sns.color_palette("tab10", n_colors=max(len(order), 1)),
                           strict=False))
        if len(order) > 10:
            palette = dict(zip(order, sns.color_palette("husl", n_colors=len(order)),
                               strict=True))
        last_step = len(frame_protocol_steps(frame)) - 1  # partial runs stop short of it
        old_classes = frame.sort_values("step")["old_classes"].iloc[-1]
        figure, grid = plt.subplots(2, 2, figsize=(10.5, 7.2), sharex=True, sharey=True)
        axes = list(grid.flat)
        for ax, (metric, title) in zip(axes, PANELS, strict=True):
            sns.lineplot(data=frame, x="step", y=metric, hue="line", hue_order=order,
                         style="status", style_order=["complete", "partial", "stale"],
                         palette=palette, errorbar="sd", marker="o", markersize=5,
                         dashes={"complete": "", "partial": (4, 2), "stale": (1, 2)}, ax=ax,
                         legend=ax is axes[0])
            ax.set_title(title.format(old=old_classes), fontsize=11)
            ax.set_xlabel("step")
            ax.set_ylabel("mIoU (%)")
            ax.set_xticks(range(last_step + 1))
            ax.set_xlim(-0.3, last_step + 0.3)
            ax.set_ylim(-3, 103)  # markers at 0 and 100 stay whole
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        # Keep the method entries (seaborn also lists the hue/style titles and styles).
        keep = [(h, label) for h, label in zip(handles, labels, strict=True) if label in order]
        figure.legend([h for h, _ in keep], [label for _, label in keep], loc="center left",
                      bbox_to_anchor=(1.0, 0.5), frameon=False, title="method")
        seeds = frame.groupby("line")["seed"].nunique()
        figure.suptitle(f"{protocol} ({frame['mode'].iloc[0]}) on {_data_note(kind, data)}\n"
                        f"mIoU after each step, {CONVENTION_TEXT[convention]}\nline = mean, "
                        f"band = ± 1 std over seeds (seeds per line: up to {int(seeds.max())})",
                        fontsize=11)
        figure.tight_layout()
        stem = out / f"curves_{_file_part(protocol)}_{_file_part(data)}_{convention}"
        written += _save(figure, stem)
    return written


def _heatmap_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """Class x step mean IoU over seeds, rows in class order, and each row's adding step."""
    table = frame.groupby(["channel", "eval_step"])["iou"].mean().unstack("eval_step")
    steps = sorted(frame["eval_step"].unique())
    table = table.reindex(columns=steps).sort_index()
    names = frame.drop_duplicates("channel").set_index("channel")
    table.index = [f"{names.loc[c, 'class']} {names.loc[c, 'class_name']}" for c in table.index]
    added = [int(names.loc[c, "added_at_step"]) for c in names.sort_index().index]
    return table, added


def class_heatmaps(long: pd.DataFrame, out: Path) -> list[Path]:
    """One heatmap per (data, protocol, method, recipe, config without seed, status)."""
    written: list[Path] = []
    keys = ["data_kind", "data", "protocol", "method", "recipe", "setup_hash", "status"]
    configs = long.groupby(["data", "protocol", "method", "status"])["setup_hash"].nunique()
    for (kind, data, protocol, method, recipe, setup, status), frame in long.groupby(keys,
                                                                                    sort=True):
        table, added = _heatmap_frame(frame)
        classes, steps = table.shape
        annotate = classes <= ANNOTATE_MAX_CLASSES
        height = 1.6 + (0.3 if annotate else 0.12) * classes
        width = 3.0 + 0.75 * steps
        figure, ax = plt.subplots(figsize=(max(width, 5.5), height))
        ax.set_facecolor("#eeeeee")  # unseen classes / no ground truth
        sns.heatmap(table, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=annotate,
                    fmt=".0f", annot_kws={"fontsize": 8}, linewidths=0.4, linecolor="white",
                    cbar_kws={"label": "IoU (%)", "shrink": 0.6})
        for row in range(1, classes):
            if added[row] != added[row - 1]:
                ax.axhline(row, color="black", linewidth=1.5)
        ax.set_xlabel("step")
        ax.set_ylabel("class (label name), grouped by the step that adds it")
        ax.tick_params(axis="y", labelsize=8 if annotate else 5)
        seeds = frame["seed"].nunique()
        ax.set_title(f"{protocol} / {method_name(method)} / recipe {recipe} / config {setup}\n"
                     f"{_data_note(kind, data)}; {status} run(s); mean IoU over {seeds} "
                     f"seed(s); grey = not seen or no ground truth", fontsize=9)
        # The config hash joins the name only where a method has several configurations, so
        # that the usual names are stable (and linkable from documents).
        several = configs[(data, protocol, method, status)] > 1
        suffix = (f"_{setup}" if several else "") + ("" if status == "complete" else "_partial")
        stem = out / (f"heatmap_{_file_part(protocol)}_{_file_part(data)}_{_file_part(method)}"
                      f"{suffix}")
        written += _save(figure, stem)
    return written


GROUP_KEYS = ["data_kind", "data", "protocol", "method", "recipe", "setup_hash", "status"]


def loss_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, step, epoch, loss term): the term's mean over the epoch."""
    rows = []
    for run in runs:
        for record in run.steps:
            for epoch, terms in enumerate(record.loss_history, start=1):
                for term, value in terms.items():
                    rows.append({"data_kind": run.data_kind, "data": run.data,
                                 "protocol": run.protocol["name"], "method": run.method,
                                 "variant": run.variant, "recipe": run.recipe,
                                 "setup_hash": run.setup_hash, "status": run.status,
                                 "seed": run.seed, "step": record.step, "epoch": epoch,
                                 "term": term, "loss": value})
    return pd.DataFrame(rows, columns=[*GROUP_KEYS[:4], "variant", *GROUP_KEYS[4:], "seed",
                                       "step", "epoch", "term", "loss"])


def loss_curves(runs: list[Run], out: Path) -> list[Path]:
    """One figure per run group: each step's per-epoch loss terms (mean over seeds, ± 1 std)."""
    table = loss_table(runs)
    written: list[Path] = []
    configs = table.groupby(["data", "protocol", "method", "status"])["setup_hash"].nunique()
    for (kind, data, protocol, method, recipe, setup, status), frame in table.groupby(
            GROUP_KEYS, sort=True):
        steps = sorted(frame["step"].unique())
        columns = min(len(steps), 4)
        rows = -(-len(steps) // columns)
        figure, grid = plt.subplots(rows, columns, figsize=(3.6 * columns + 1.6, 2.9 * rows),
                                    squeeze=False)
        terms = sorted(frame["term"].unique())
        palette = dict(zip(terms, sns.color_palette("tab10", n_colors=max(len(terms), 1)),
                           strict=False))
        for ax, step in zip(grid.flat, steps, strict=False):
            part = frame[frame["step"] == step]
            sns.lineplot(data=part, x="epoch", y="loss", hue="term", hue_order=terms,
                         palette=palette, errorbar="sd", marker="o", markersize=3, ax=ax,
                         legend=False)
            if (part["loss"] > 0).all():
                ax.set_yscale("log")
            ax.set_title(f"step {step}", fontsize=10)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel("mean loss")
            ax.grid(alpha=0.3)
        for ax in list(grid.flat)[len(steps):]:
            ax.set_visible(False)
        handles = [plt.Line2D([], [], color=palette[t], marker="o", markersize=3) for t in terms]
        figure.legend(handles, terms, loc="center left", bbox_to_anchor=(1.0, 0.5),
                      frameon=False, title="loss term")
        seeds = frame["seed"].nunique()
        figure.suptitle(f"{protocol} / {method_label(method, frame['variant'].iloc[0])} / recipe "
                        f"{recipe} / config {setup}; {_data_note(kind, data)}; {status} run(s)\n"
                        f"per-epoch mean of each loss term, line = mean, band = ± 1 std over "
                        f"{seeds} seed(s)", fontsize=10)
        figure.tight_layout()
        several = configs[(data, protocol, method, status)] > 1
        suffix = (f"_{setup}" if several else "") + ("" if status == "complete" else
                                                     f"_{status}")
        stem = out / (f"losses_{_file_part(protocol)}_{_file_part(data)}_"
                      f"{_file_part(method)}{suffix}")
        written += _save(figure, stem)
    return written
