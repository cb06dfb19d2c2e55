"""The HTML the classify widget shows: result cards, error cards and their style."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

CELL_INFO = {
    "EOSINOPHIL": ("Bilobed nucleus; cytoplasm packed with large orange-red granules.",
                   "Fights parasites and takes part in allergic reactions; 1-4% of white cells."),
    "LYMPHOCYTE": ("Small cell; one large round, dark nucleus with a thin rim of blue cytoplasm.",
                   "Adaptive immunity: B cells make antibodies, T cells kill infected cells; 20-40%."),
    "MONOCYTE": ("The largest white cell; kidney- or horseshoe-shaped nucleus, grey-blue cytoplasm.",
                 "Leaves the blood to become macrophages that engulf debris and microbes; 2-8%."),
    "NEUTROPHIL": ("Nucleus of 3-5 lobes joined by thin strands; pale, finely granular cytoplasm.",
                   "First responder to bacterial infection, engulfs bacteria; 40-70% of white cells."),
}

STYLE = """<style>
.hv-card {border:1px solid #ccc; border-radius:6px; padding:8px; margin:6px 0; display:flex; gap:12px;}
.hv-error {border-color:#d33; background:#fff4f4; color:#a00;}
.hv-uncertain {color:#b36b00; font-weight:bold;}
.hv-bar {background:#e8e8e8; width:180px; height:12px; display:inline-block; vertical-align:middle;}
.hv-bar > span {background:#4a78c2; height:12px; display:block;}
.hv-class {font-size:1.2em; font-weight:bold;}
.hv-results {flex-direction:column; align-items:stretch;}
</style>"""


def _png_data_url(rgb: np.ndarray, max_side: int = 224) -> str:
    from PIL import Image

    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def result_html(prediction, preview: np.ndarray, cam: np.ndarray | None = None) -> str:
    """One result card: preview, class, confidence, probability bars, flags, cell card, timing."""
    p = prediction
    bars = "".join(
        f"<div>{html.escape(c.title()):<11} <span class='hv-bar'><span style='width:{v * 100:.0f}%'>"
        f"</span></span> {v:.1%}</div>" for c, v in p.probabilities.items())
    looks, does = CELL_INFO.get(p.class_name, ("", ""))
    flag = (f"<div class='hv-uncertain'>Uncertain: confidence below {p.uncertain_below:.0%}; "
            "do not trust this label.</div>" if p.uncertain else "")
    notes = "".join(f"<div><i>{html.escape(n)}</i></div>" for n in p.notes)
    images = f"<img src='{_png_data_url(preview)}' alt='preview' title='{html.escape(p.name)}'>"
    if cam is not None:
        images += f"<img src='{_png_data_url(cam)}' alt='Grad-CAM' title='Grad-CAM: where the model looked'>"
    return (f"<div class='hv-card hv-result'><div>{images}</div><div>"
            f"<div>{html.escape(Path(p.name).name)}</div>"
            f"<div class='hv-class'>Predicted: {p.class_name} ({p.confidence:.1%})</div>{flag}{bars}"
            f"<div><b>Looks like:</b> {looks}<br><b>Does:</b> {does}</div>{notes}"
            f"<div style='color:#777'>prediction took {p.seconds * 1000:.0f} ms</div></div></div>")


def error_html(name: str, message: str) -> str:
    """An error card for a file that could not be classified."""
    return (f"<div class='hv-card hv-error'><div><b>Could not classify {html.escape(Path(name).name)}</b>"
            f"<br>{html.escape(message)}</div></div>")
