"""PNG charts of training curves (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def plot_loss_curves(history: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    """One panel per stage: TAE L1, TAE decoder fine-tuning L1, backbone train loss (smoothed) and
    validation flow-matching loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [
        ("tae/l1", "TAE L1 reconstruction (crops)"),
        ("tae_decoder/l1", "TAE decoder fine-tuning L1 (frames)"),
        ("train/loss", "flow-matching loss"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (tag, name) in zip(axes, panels, strict=True):
        points = history.get(tag, [])
        if points:
            steps, values = map(np.asarray, zip(*points, strict=True))
            window = max(1, len(values) // 50)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps, values, alpha=0.25, color="tab:blue", label="train")
            ax.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"train (mean of {window})")
        if tag == "train/loss" and history.get("val/loss"):
            vs, vv = zip(*history["val/loss"], strict=True)
            ax.plot(vs, vv, "o-", color="tab:red", label="validation")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
