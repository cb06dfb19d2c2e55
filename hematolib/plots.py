"""Figures for the notebooks; every function returns a matplotlib Figure and shows nothing itself."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .config import CLASS_NAMES
from .data import ImageRecord


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    return fig, axes


def class_counts(counts: Mapping[str, Mapping[str, int]], title: str = "Images per class"):
    """Grouped bars: one group per class, one bar per split. counts: split -> class -> n."""
    fig, axes = _figure(7, 3.5)
    ax = axes[0, 0]
    splits = list(counts)
    width = 0.8 / max(len(splits), 1)
    x = np.arange(len(CLASS_NAMES))
    for i, split in enumerate(splits):
        values = [counts[split].get(c, 0) for c in CLASS_NAMES]
        bars = ax.bar(x + i * width, values, width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x + width * (len(splits) - 1) / 2, [c.title() for c in CLASS_NAMES])
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def sample_grid(records: Sequence[ImageRecord], per_class: int = 4, seed: int = 0):
    """A grid of images: one row per class, `per_class` random images from distinct originals."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    fig, axes = _figure(2.4 * per_class, 2.0 * len(CLASS_NAMES), ncols=per_class,
                        nrows=len(CLASS_NAMES))
    for row, class_name in enumerate(CLASS_NAMES):
        by_original: dict[str, ImageRecord] = {}
        for r in records:
            if r.class_name == class_name:
                by_original.setdefault(r.original, r)
        pool = list(by_original.values())
        chosen = [pool[i] for i in rng.permutation(len(pool))[:per_class]]
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(chosen):
                with Image.open(chosen[col].path) as im:
                    ax.imshow(im.convert("RGB"))
                ax.set_title(f"{class_name.title()}\n{chosen[col].path.name}", fontsize=7)
    fig.tight_layout()
    return fig


def image_row(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, size: float = 2.2):
    """A row of images (each (H, W, 3), uint8 or float 0..255) with optional titles."""
    fig, axes = _figure(size * len(images), size * 0.9, ncols=len(images))
    for i, img in enumerate(images):
        ax = axes[0, i]
        ax.imshow(np.clip(np.asarray(img), 0, 255).astype(np.uint8))
        ax.axis("off")
        if titles:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def history(*histories, title: str = "Training curves"):
    """Loss and accuracy per epoch for one or more Keras `fit` histories or `train.History`
    (stages are chained)."""
    fig, axes = _figure(10, 3.5, ncols=2)
    offset = 0
    for h in histories:
        metrics = h.metrics if hasattr(h, "stage") else h.history
        stage = h.stage if hasattr(h, "stage") else ""
        n = len(metrics["loss"])
        epochs = np.arange(offset + 1, offset + n + 1)
        for ax, key in zip(axes[0], ("loss", "accuracy")):
            ax.plot(epochs, metrics[key], "o-", ms=3, label=f"{stage} train".strip())
            if f"val_{key}" in metrics:
                ax.plot(epochs, metrics[f"val_{key}"], "s--", ms=3, label=f"{stage} validation".strip())
        offset += n
    for ax, key in zip(axes[0], ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_rate(schedule, steps: int, title: str = "Learning rate"):
    """A Keras learning-rate schedule over `steps` training steps."""
    fig, axes = _figure(6, 2.8)
    ax = axes[0, 0]
    at = np.unique(np.linspace(0, steps - 1, 200).round().astype(int))  # 200 points draw the curve
    ax.plot(at, [float(schedule(int(step))) for step in at])
    ax.set_xlabel("training step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(confusion: Sequence[Sequence[int]], title: str = "Confusion matrix",
                     normalize: bool = True):
    """Heatmap of true (rows) vs predicted (columns) classes; cells show share of the row and count."""
    import seaborn as sns

    cm = np.asarray(confusion, dtype=float)
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    labels = np.array([[f"{shares[i, j]:.0%}\n{int(cm[i, j])}" for j in range(cm.shape[1])]
                       for i in range(cm.shape[0])])
    fig, axes = _figure(5.5, 4.5)
    names = [c.title() for c in CLASS_NAMES]
    sns.heatmap(shares if normalize else cm, annot=labels, fmt="", cmap="Blues", vmin=0,
                vmax=1 if normalize else None, xticklabels=names, yticklabels=names, ax=axes[0, 0],
                cbar=False)
    axes[0, 0].set_xlabel("predicted")
    axes[0, 0].set_ylabel("true")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def reliability(calibration: Mapping[str, np.ndarray], title: str = "Reliability diagram"):
    """Accuracy against confidence per bin (from `evaluate.calibration`); the diagonal is perfect."""
    fig, axes = _figure(4.5, 4.5)
    ax = axes[0, 0]
    edges = calibration["edges"]
    centers = (edges[:-1] + edges[1:]) / 2
    ok = calibration["count"] > 0
    ax.bar(centers[ok], calibration["accuracy"][ok], width=edges[1] - edges[0], alpha=0.7,
           edgecolor="k", label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "k--", label="perfectly calibrated")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {calibration['ece']:.3f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def probabilities(probs: Sequence[float], title: str = ""):
    """Horizontal bars of the four class probabilities of one prediction."""
    fig, axes = _figure(4, 2)
    ax = axes[0, 0]
    probs = np.asarray(probs)
    colors = ["tab:blue" if p < probs.max() else "tab:orange" for p in probs]
    ax.barh([c.title() for c in CLASS_NAMES], probs, color=colors)
    ax.set_xlim(0, 1)
    for i, p in enumerate(probs):
        ax.text(min(p + 0.02, 0.85), i, f"{p:.0%}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def channel_means(stats: Mapping, title: str = "Mean colour per class (RGB)"):
    """Bars of the mean R, G, B value per class, from `data.image_stats`."""
    fig, axes = _figure(6, 3)
    ax = axes[0, 0]
    x = np.arange(len(CLASS_NAMES))
    for i, (channel, color) in enumerate(zip("RGB", ("tab:red", "tab:green", "tab:blue"))):
        ax.bar(x + (i - 1) * 0.25, [stats["mean"][c][i] for c in CLASS_NAMES], 0.25, color=color,
               yerr=[stats["std"][c][i] for c in CLASS_NAMES], capsize=2, label=channel)
    ax.set_xticks(x, [c.title() for c in CLASS_NAMES])
    ax.set_ylim(0, 255)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def grouped_bars(values: Mapping[str, Mapping[str, float]], title: str = "", ylabel: str = "accuracy"):
    """Bars for {group: {series: value}}, e.g. split comparison or robustness; values are 0..1."""
    fig, axes = _figure(max(5, 1.6 * len(values)), 3.5)
    ax = axes[0, 0]
    groups = list(values)
    series = list(next(iter(values.values())))
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    for i, name in enumerate(series):
        bars = ax.bar(x + i * width, [values[g][name] for g in groups], width, label=name)
        ax.bar_label(bars, fmt="{:.0%}".format, fontsize=8)
    ax.set_xticks(x + width * (len(series) - 1) / 2, groups, fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_files(records: Sequence[ImageRecord], titles: Sequence[str] | None = None, size: float = 2.2):
    """A row of image files, titled with their file names unless `titles` are given."""
    from PIL import Image

    images = []
    for r in records:
        with Image.open(r.path) as im:
            images.append(np.asarray(im.convert("RGB")))
    return image_row(images, titles or [r.path.name for r in records], size=size)


def mistakes(errors, columns: int = 4):
    """A gallery of wrong predictions from `evaluate.mistakes`: true -> predicted, confidence, the
    file and the original cell it shows (a report's `cells_missed` names cells the same way)."""
    from PIL import Image

    rows = max(1, -(-len(errors) // columns))
    fig, axes = _figure(2.6 * columns, 2.3 * rows, ncols=columns, nrows=rows)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (record, predicted, confidence) in zip(axes.flat, errors):
        with Image.open(record.path) as im:
            ax.imshow(im.convert("RGB"))
        ax.set_title(f"{record.class_name.title()} -> {CLASS_NAMES[predicted].title()}\n"
                     f"{confidence:.0%}  {record.path.name}  {record.original}", fontsize=7, color="darkred")
    fig.tight_layout()
    return fig


def grad_cams(model, records: Sequence[ImageRecord]):
    """What the network saw beside its Grad-CAM overlay, titled with true and predicted class."""
    from .explain import grad_cam, overlay
    from .images import read_image
    from .inference import Predictor

    predictor = Predictor(model)
    fig, axes = _figure(5, 2.4 * len(records), ncols=2, nrows=len(records))
    for row, record in enumerate(records):
        image = predictor.preprocess(read_image(record.path)[0])[0]
        probs = predictor.probabilities(image.astype(np.uint8))
        view, cam = grad_cam(model, image)
        for ax, shown in zip(axes[row], (view, overlay(view, cam))):
            ax.imshow(np.asarray(shown).astype(np.uint8))
            ax.axis("off")
        axes[row, 0].set_title(f"true {record.class_name.title()}", fontsize=8)
        axes[row, 1].set_title(f"predicted {CLASS_NAMES[int(probs.argmax())].title()} "
                               f"({probs.max():.0%})", fontsize=8)
    fig.tight_layout()
    return fig


def confidence_histogram(probs: np.ndarray, labels: np.ndarray, title: str = "Confidence"):
    """Histograms of the top probability for right and for wrong predictions."""
    fig, axes = _figure(6, 3)
    ax = axes[0, 0]
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    bins = np.linspace(0.25, 1, 16)
    ax.hist(conf[right], bins=bins, alpha=0.7, label=f"right ({right.sum()})", color="tab:green")
    ax.hist(conf[~right], bins=bins, alpha=0.7, label=f"wrong ({(~right).sum()})", color="tab:red")
    ax.set_xlabel("confidence (top softmax probability)")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _boxed_and_crop(rgb: np.ndarray, size: int):
    """An RGB image (H, W, 3) with the locator's box drawn on it, and the crop resized to (size, size):
    two PIL images."""
    from PIL import Image, ImageDraw

    from .locate import crop_cell, locate_cell

    y, x, side = (int(v) for v in locate_cell(rgb))
    boxed = Image.fromarray(rgb)
    ImageDraw.Draw(boxed).rectangle([x - side // 2, y - side // 2, x + side // 2, y + side // 2],
                                    outline=(0, 200, 0), width=3)
    return boxed, Image.fromarray(np.asarray(crop_cell(rgb))).resize((size, size))


def cell_crops(records: Sequence[ImageRecord], size: int = 128):
    """Each image with the box the locator found, above the crop the network sees."""
    from .images import read_image

    fig, axes = _figure(2.4 * len(records), 4.4, ncols=len(records), nrows=2)
    for col, record in enumerate(records):
        for row, shown in enumerate(_boxed_and_crop(read_image(record.path)[0], size)):
            axes[row, col].imshow(shown)
            axes[row, col].axis("off")
        axes[0, col].set_title(record.class_name.title(), fontsize=8)
    fig.tight_layout()
    return fig


def missed_cell_images(missed: Sequence[Mapping], records: Sequence[ImageRecord], per_cell: int = 3,
                       limit: int = 8, size: int = 128):
    """A row per missed cell (`evaluate.missed_cell_details`, at most `limit`): `per_cell` of its
    images, spread over its copies, each with the locator's box beside the crop the network saw.
    Images with too little nucleus stain for a whole cell (`locate.little_stain`) say so in red."""
    from .images import read_image
    from .locate import little_stain

    shown = list(missed)[:limit]
    fig, axes = _figure(2.1 * 2 * per_cell, 2.2 * max(1, len(shown)), ncols=2 * per_cell, nrows=max(1, len(shown)))
    for ax in axes.flat:
        ax.axis("off")
    for row, cell in enumerate(shown):
        mine = sorted((r for r in records if r.original == cell["cell"]), key=lambda r: r.path.name)
        picks = [mine[i] for i in sorted(set(np.linspace(0, len(mine) - 1, per_cell).round().astype(int)))]
        for k, record in enumerate(picks):
            rgb = read_image(record.path)[0]
            for j, image in enumerate(_boxed_and_crop(rgb, size)):
                axes[row, 2 * k + j].imshow(image)
            cut = little_stain(rgb)
            axes[row, 2 * k].set_title(f"{record.path.name}" + ("\nlittle stain: cut off?" if cut else ""),
                                       fontsize=7, color="darkred" if cut else "black")
        axes[row, 1].set_title(f"{cell['cell']}\n{cell['true'].title()} -> {cell['called'].title()}, "
                               f"{cell['right']}/{cell['images']} right", fontsize=7, color="darkred")
    fig.tight_layout()
    return fig


def explained_cells(model, records: Sequence[ImageRecord]):
    """For each record: the smear with the box the model crops, and its Grad-CAM over the crop,
    titled with the true class, the prediction and its confidence."""
    from .explain import grad_cam, overlay
    from .images import read_image
    from .inference import Predictor

    predictor = Predictor(model)
    fig, axes = _figure(2.6 * len(records), 5.0, ncols=len(records), nrows=2)
    for col, record in enumerate(records):
        image = predictor.preprocess(read_image(record.path)[0])[0]
        probs = predictor.probabilities(image.astype(np.uint8))
        view, cam = grad_cam(model, image)
        boxed, _ = _boxed_and_crop(image.astype(np.uint8), 64)
        for row, shown in enumerate((boxed, overlay(view, cam))):
            axes[row, col].imshow(np.asarray(shown).astype(np.uint8))
            axes[row, col].axis("off")
        axes[0, col].set_title(f"{record.class_name.title()} ({record.path.name})", fontsize=8)
        axes[1, col].set_title(f"predicted {CLASS_NAMES[int(probs.argmax())].title()} ({probs.max():.0%})",
                               fontsize=8)
    fig.tight_layout()
    return fig

