"""Outputs of a clustering: labels CSV, PNG map, interactive HTML map, one HTML report.

Each function returns the file's contents; the caller writes them together
(:func:`genrec.io.atomic_write_files`). The HTML is self-contained (no network, no CDN): points
are drawn on a canvas by a few lines of inline JavaScript, with a tooltip on hover showing
the user id, cluster, activity and top genres.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from importlib import resources

import numpy as np

from genrec._optional import require

__all__ = ["labels_csv", "map_png", "map_html", "report_html", "PALETTE"]

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
]


def _color(c: int) -> str:
    return PALETTE[c % len(PALETTE)]


def labels_csv(user_ids: np.ndarray, labels: np.ndarray, proba: np.ndarray) -> str:
    """CSV text with columns user_id, cluster, probability."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["user_id", "cluster", "probability"])
    for u, c, p in zip(user_ids.tolist(), labels.tolist(), proba.tolist()):
        w.writerow([u, c, f"{p:.4f}"])
    return buf.getvalue()


def map_png(xy: np.ndarray, labels: np.ndarray, title: str) -> bytes:
    """A PNG scatter of the map, coloured by cluster (matplotlib, no global backend)."""
    FigureCanvasAgg = require(
        "matplotlib.backends.backend_agg", "analysis", "The PNG map"
    ).FigureCanvasAgg
    Figure = require("matplotlib.figure", "analysis", "The PNG map").Figure

    fig = Figure(figsize=(8, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(
            xy[m, 0],
            xy[m, 1],
            s=4,
            alpha=0.6,
            color=_color(int(c)),
            label=f"cluster {c} ({m.sum()})",
            linewidths=0,
        )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=4, fontsize=8, loc="best", frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _scatter_js() -> str:
    return resources.files("genrec.analysis").joinpath("scatter.js").read_text(encoding="utf-8")


def _scatter_block(
    xy: np.ndarray,
    labels: np.ndarray,
    user_ids: np.ndarray,
    activity: np.ndarray,
    top_genres: list[str] | None,
    dom_id: str,
) -> str:
    pts = [
        [
            round(float(x), 3),
            round(float(y), 3),
            int(c),
            str(u),
            int(a),
            (top_genres[j] if top_genres else ""),
        ]
        for j, (x, y, c, u, a) in enumerate(zip(xy[:, 0], xy[:, 1], labels, user_ids, activity))
    ]
    js = (
        _scatter_js()
        .replace("__ID__", dom_id)
        .replace("__PALETTE__", json.dumps(PALETTE))
        .replace("__DATA__", json.dumps(pts).replace("</", "<\\/"))
    )  # last: may hold anything
    return (
        f'<canvas id="{dom_id}" width="900" height="700" style="border:1px solid #ccc;'
        f'max-width:100%"></canvas><div id="{dom_id}-tip" style="position:absolute;'
        f"display:none;background:#fff;border:1px solid #999;padding:3px 6px;"
        f'font:12px sans-serif;pointer-events:none"></div><script>{js}</script>'
    )


def map_html(xy, labels, user_ids, activity, top_genres, title: str) -> str:
    """A self-contained interactive HTML page of the map."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title></head><body style='font-family:sans-serif'><h2>{html.escape(title)}</h2>"
        f"<p>Hover a point for the user id, cluster, activity and top genres.</p>"
        f"{_scatter_block(xy, labels, user_ids, activity, top_genres, 'map')}</body></html>"
    )


def _fmt_pairs(pairs, pct: bool = False) -> str:
    out = []
    for name, a, b in pairs:
        out.append(
            f"{html.escape(str(name))} ({a:.0%}, lift {b:.2f})"
            if pct
            else f"{html.escape(str(name))} (lift {a:.2f}, {b:.0%})"
        )
    return "; ".join(out)


def report_html(
    *,
    title: str,
    summary: dict,
    profiles: list[dict],
    png: bytes,
    xy,
    labels,
    user_ids,
    activity,
    top_genres,
    k_table: list[dict] | None,
) -> str:
    """One HTML page: the summary, the map (PNG and interactive), a table per cluster."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;margin:6px 0 18px}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;vertical-align:top}th{background:#f4f4f4}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<table>",
    ]
    for key, value in summary.items():
        parts.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>")
    parts.append("</table>")
    if k_table:
        parts.append(
            "<h2>Choice of K</h2><table><tr><th>K</th><th>silhouette</th><th>BIC</th></tr>"
        )
        for r in k_table:
            bic = "" if r["bic"] is None else f"{r['bic']:.1f}"
            parts.append(f"<tr><td>{r['k']}</td><td>{r['silhouette']:.3f}</td><td>{bic}</td></tr>")
        parts.append("</table>")
    b64 = base64.b64encode(png).decode()
    parts.append(
        f"<h2>Map</h2><img alt='map' src='data:image/png;base64,{b64}' "
        f"style='max-width:100%'><h3>Interactive</h3>"
    )
    parts.append(_scatter_block(xy, labels, user_ids, activity, top_genres, "imap"))
    parts.append("<h2>Clusters</h2>")
    for p in profiles:
        color = _color(p["cluster"])
        parts.append(
            f"<h3><span style='color:{color}'>&#9632;</span> Cluster {p['cluster']}: "
            f"{p['size']} users ({p['share']:.1%}), mean activity "
            f"{p['mean_activity']:.1f}</h3><table>"
        )
        if "top_genres" in p:
            parts.append(
                f"<tr><th>over-represented genres</th><td>{_fmt_pairs(p['top_genres'])}</td></tr>"
            )
        items = "; ".join(
            f"{html.escape(str(i['title'] or i['item']))} (lift {i['lift']:.2f}, "
            f"{i['share']:.1%} of the cluster)"
            for i in p["characteristic_items"]
        )
        if "items_rule" in p:
            items = f"{items or 'none'} <em>({html.escape(p['items_rule'])})</em>"
        parts.append(f"<tr><th>characteristic items</th><td>{items}</td></tr>")
        for key, vals in p.get("demographics", {}).items():
            parts.append(
                f"<tr><th>{html.escape(key)}</th><td>{_fmt_pairs(vals, pct=True)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
