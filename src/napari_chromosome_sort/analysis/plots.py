"""Readout plots (matplotlib, no pyplot state, no Qt): every function returns a
``matplotlib.figure.Figure`` that can be saved with :func:`save_figure` or embedded in a Qt canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from napari_chromosome_sort.files.atomic import atomic_path

# Colours close to the paper's Fig. 5 (type A dark, B mid, C light).
_TYPE_COLOURS = ["#3b4cc0", "#f4a582", "#b2182b", "#8fbc8f", "#999999", "#e7d87d", "#6a3d9a"]


def _plain(text) -> str:
    """``text`` shown as typed: ``$`` escaped, so that a class or sample name like ``$x$`` is
    no matplotlib mathtext (which can fail to parse and abort the plot)."""
    return str(text).replace("$", r"\$")


def _new_figure(figsize=(5, 4)) -> tuple[Figure, object]:
    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def _interval(sub: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """The interval to draw for each bar and what it is: corrected for the classifier's error
    when the summary has it, else spreads as replicates, else Wilson over chromosomes."""
    for low, high, what in (
        ("adjusted_low", "adjusted_high", "corrected for the classifier's error (◆)"),
        ("share_low", "share_high", "spreads as replicates"),
        ("ci_low", "ci_high", "chromosomes as replicates"),
    ):
        if low in sub.columns and sub[low].notna().any():
            return sub[low].to_numpy(float), sub[high].to_numpy(float), what
    return np.full(len(sub), np.nan), np.full(len(sub), np.nan), ""


def _caption(comparisons, interval: str, width: int = 80, summary=None) -> str:
    """Under the title: each comparison's test with its n, and what the whiskers are."""
    import textwrap

    lines = []
    for comp in comparisons or []:
        if getattr(comp, "replicates", "") == "spreads":
            text = (
                f"{comp.sample_a} vs {comp.sample_b}: {comp.test}; {comp.n_spreads_a} vs "
                f"{comp.n_spreads_b} spreads, {comp.n_a} vs {comp.n_b} chromosomes; "
                f"{_p_text(comp.p_value)}"
            )
            if comp.smallest_p >= comp.alpha:
                text += f" (no p below {comp.smallest_p:.2g} is possible)"
            text += f". Secondary, chromosomes as replicates: {_p_text(comp.secondary.p_value)}"
        else:
            text = (
                f"{comp.sample_a} vs {comp.sample_b}: {comp.test}, chromosomes as replicates "
                f"(no spreads), {comp.n_a} vs {comp.n_b} chromosomes; {_p_text(comp.p_value)}"
            )
        lines.append(textwrap.fill(_plain(text), width))
    if interval:
        lines.append(
            textwrap.fill(f"Bars: share of calls; whiskers: 95 % interval, {interval}", width)
        )
    if summary is not None and "spreads_misfit" in summary.columns:
        misfit = summary.groupby("sample", sort=False)["spreads_misfit"].first()
        misfit = misfit[misfit > 0]
        if len(misfit):
            names = ", ".join(f"{_plain(k)} ({int(v)} spreads)" for k, v in misfit.items())
            text = (
                f"◆ not to be trusted where the model's confusion cannot explain the calls: {names}"
            )
            lines.append(textwrap.fill(text, width))
    return "\n".join(lines)


def _p_text(p: float) -> str:
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 1e-4"


def stacked_bar(
    summary: pd.DataFrame,
    title: str = "Cohesion type distribution",
    comparisons: Sequence | None = None,
    show_ci: bool = True,
    fig: Figure | None = None,
    colours: dict[str, str] | None = None,
    spreads: pd.DataFrame | None = None,
) -> Figure:
    """Each sample's type shares as bars side by side (one per class, so that no interval is
    stacked past 100 %), with whiskers for each share's 95 % interval (see :func:`_interval`),
    the per-spread shares as dots (``spreads``: :func:`readout.spread_summary`), the headline
    test's p above each compared pair, and the test and n (spreads, chromosomes) under the
    title. ``summary`` is :func:`readout.summarize` output; ``comparisons`` the
    :func:`readout.compare_all` list; ``colours`` ({class: colour}) gives the classes the colours
    they have elsewhere (e.g. on the spread)."""
    samples = list(dict.fromkeys(summary["sample"]))
    classes = list(dict.fromkeys(summary["class"]))
    if fig is None:
        fig = Figure(figsize=(max(5.5, 2.6 + 1.2 * len(samples) * max(1, len(classes) / 3)), 4.8))
        fig.set_layout_engine("constrained")
    else:
        fig.clear()
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(classes), 1)
    x = np.arange(len(samples))
    interval = ""
    for j, cls in enumerate(classes):
        sub = summary[summary["class"] == cls].set_index("sample").reindex(samples)
        pct = sub["percent"].fillna(0).to_numpy()
        colour = (colours or {}).get(cls) or _TYPE_COLOURS[j % len(_TYPE_COLOURS)]
        xs = x - 0.4 + width * (j + 0.5)
        ax.bar(xs, pct, width=width * 0.92, color=colour, edgecolor="white", label=_plain(cls))
        lo, hi, interval = _interval(sub)
        centre = pct
        if "adjusted_percent" in sub.columns and sub["adjusted_percent"].notna().any():
            centre = sub["adjusted_percent"].to_numpy(float)
            ax.plot(xs, centre, "D", ms=3.5, color="black", zorder=4)
        if show_ci and np.isfinite(lo).any():
            yerr = np.clip([centre - lo, hi - centre], 0, None)
            ax.errorbar(
                xs,
                centre,
                yerr=yerr,
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=2,
                zorder=3,
            )
        _spread_dots(ax, spreads, samples, cls, xs, width)
        _bar_labels(ax, xs, pct, colour)
    ticks = _tick_labels(summary, samples)
    ax.set_xticks(x, ticks, fontsize=8)
    ax.set_ylabel("% of chromosomes")
    ax.set_ylim(0, 100 + (8 + 6 * len(comparisons) if comparisons else 0))
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    caption = _caption(comparisons, interval, int(14 * fig.get_figwidth()), summary)
    ax.set_title(_plain(title) + ("\n" + caption if caption else ""), fontsize=7, loc="left")
    ax.legend(title="type", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _brackets(ax, comparisons, samples, x)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    return fig


def _spread_dots(ax, spreads, samples, cls, xs, width) -> None:
    """Each spread's share of ``cls`` as a small open dot over its sample's bar."""
    if spreads is None or spreads.empty:
        return
    for i, sample in enumerate(samples):
        values = spreads[(spreads["sample"] == sample) & (spreads["class"] == cls)]
        offsets = np.linspace(-0.25, 0.25, max(len(values), 1)) * width
        ax.plot(
            xs[i] + offsets[: len(values)],
            values["percent"],
            "o",
            ms=2.5,
            mfc="white",
            mec="#444444",
            mew=0.6,
            zorder=5,
        )


def _bar_labels(ax, xs, pct, colour) -> None:
    """The rounded share at the foot of each bar."""
    for i, value in enumerate(pct):
        ax.text(
            xs[i],
            1,
            f"{value:.0f}",
            ha="center",
            va="bottom",
            fontsize=6,
            color="white" if _dark(colour) else "black",
            zorder=6,
        )


def _tick_labels(summary: pd.DataFrame, samples) -> list[str]:
    """'<sample>\n(<m> spreads, <n> chr.)' for each sample."""
    totals = summary.groupby("sample", sort=False).first().reindex(samples)
    ticks = []
    for sample, row in totals.iterrows():
        n_spreads = row.get("n_spreads")
        spread_text = ""
        if pd.notna(n_spreads):
            spread_text = f"{int(n_spreads)} spread{'' if int(n_spreads) == 1 else 's'}, "
        ticks.append(f"{_plain(sample)}\n({spread_text}{int(row['n'])} chr.)")
    return ticks


def _brackets(ax, comparisons, samples, x) -> None:
    """A bracket with the headline p over each compared pair."""
    for k, comp in enumerate(comparisons or []):
        if comp.sample_a not in samples or comp.sample_b not in samples:
            continue
        i, j2 = samples.index(comp.sample_a), samples.index(comp.sample_b)
        y = 103 + 6 * k
        ax.plot([x[i], x[i], x[j2], x[j2]], [y - 1, y, y, y - 1], color="black", lw=0.8)
        ax.text(
            (x[i] + x[j2]) / 2, y + 0.5, _p_text(comp.p_value), ha="center", va="bottom", fontsize=7
        )


def _dark(colour) -> bool:
    r, g, b = to_rgb(colour)
    return 0.299 * r + 0.587 * g + 0.114 * b <= 0.55


def confusion_matrix_plot(
    confusion,
    classes: Sequence[str],
    title: str = "Confusion matrix",
    normalize: bool = True,
) -> Figure:
    """Heat map of a confusion matrix (rows = truth, columns = prediction); counts annotated."""
    if isinstance(confusion, dict):  # metrics.evaluate()["confusion"]
        confusion = confusion["counts"]
    m = np.asarray(confusion, dtype=float)
    fig, ax = _new_figure((4.2, 3.8))
    shown = m / np.maximum(m.sum(1, keepdims=True), 1) if normalize else m
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            label = f"{int(m[i, j])}" + (f"\n{100 * shown[i, j]:.0f}%" if normalize else "")
            ax.text(
                j,
                i,
                label,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > 0.6 * (shown.max() or 1) else "black",
            )
    ax.set_xticks(range(len(classes)), [_plain(c) for c in classes])
    ax.set_yticks(range(len(classes)), [_plain(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_plain(title), fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    return fig


def learning_curve_plot(history, title: str = "Learning curve", x: str | None = None) -> Figure:
    """Line plot of training history or of a learning curve.

    ``history``: DataFrame / dict of lists / list of dicts; ``x`` the x column (default: the
    first of ``epoch``, ``step``, ``n_train``, ``train_size``, else the row index). Loss-like
    columns go on the left axis, score columns (accuracy, kappa...) on a right axis, or on the
    only axis when there is no loss; an ``sd`` column becomes error bars of the first score.
    """
    df = pd.DataFrame(history)
    if df.empty:
        raise ValueError("empty history")
    if x is None:
        x = next((c for c in ("epoch", "step", "n_train", "train_size") if c in df.columns), None)
    xs = df[x].to_numpy() if x else np.arange(1, len(df) + 1)
    sd = df["sd"].to_numpy() if "sd" in df.columns else None
    numeric = [
        c
        for c in df.columns
        if c not in (x, "sd", "per_class") and np.issubdtype(df[c].dtype, np.number)
    ]
    losses = [c for c in numeric if "loss" in c.lower()]
    scores = [c for c in numeric if c not in losses]
    fig, ax = _new_figure((5, 3.6))
    for col in losses:
        ax.plot(xs, df[col], marker="o", ms=3, label=_plain(col))
    score_ax = ax.twinx() if losses and scores else ax
    for k, col in enumerate(scores):
        if k == 0 and sd is not None:
            score_ax.errorbar(xs, df[col], yerr=sd, marker="s", ms=3, capsize=2, label=_plain(col))
        else:
            score_ax.plot(xs, df[col], marker="s", ms=3, ls="--", label=_plain(col))
    ax.set_xlabel(x or "epoch")
    ax.set_ylabel("loss" if losses else "score")
    if scores:
        score_ax.set_ylabel("score")
        score_ax.set_ylim(0, 1.02)
    handles, labels = ax.get_legend_handles_labels()
    if score_ax is not ax:
        h2, l2 = score_ax.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="lower right")
    ax.set_title(_plain(title), fontsize=10)
    return fig


def agreement_plot(
    kappa: pd.DataFrame,
    concordance: pd.DataFrame | None = None,
    title: str = "Agreement",
) -> Figure:
    """Annotator x annotator heat map (paper's Fig. 1B): upper triangle concordance (%), lower
    triangle Cohen's kappa, or kappa everywhere when no concordance is given."""
    names = [_plain(n) for n in kappa.index]
    k = kappa.to_numpy(dtype=float)
    fig, ax = _new_figure((1.6 + 0.8 * len(names), 1.2 + 0.7 * len(names)))
    shown = k.copy()
    if concordance is not None:
        c = concordance.to_numpy(dtype=float)
        upper = np.triu_indices(len(names), 1)
        shown[upper] = c[upper]
    im = ax.imshow(shown, cmap="viridis", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j:
                continue
            text = (
                f"{100 * shown[i, j]:.0f}%"
                if concordance is not None and j > i
                else f"κ {shown[i, j]:.2f}"
            )
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="black" if shown[i, j] > 0.6 else "white",
            )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    sub = "upper: concordance, lower: Cohen's κ" if concordance is not None else "Cohen's κ"
    ax.set_title(f"{_plain(title)}\n({sub})", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def save_figure(fig: Figure, path_stem, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<fmt>`` for each format (atomic rename); returns paths."""

    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        final = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
        out.append(final)
    return out
