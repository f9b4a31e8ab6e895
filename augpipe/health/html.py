"""`augpipe inspect SOURCE --html DIR`: the health report as a static page (no server, no external
assets): the figures as plots, then every problem with a thumbnail of its image.

DIR/index.html, DIR/plots/*.png (matplotlib, Agg), DIR/thumbs/*.jpg. Only a new or empty folder,
or a report augpipe wrote there before, is written into.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from augpipe.health.base import CHECKS, GROUPS

REPORT_MARK = "<!-- augpipe health report -->"
THUMB = 144  # px, the longest side of a problem's thumbnail
PER_CHECK = 60  # problems shown with thumbnails a check; the rest are listed
OWN = (("plots", "*.png"), ("thumbs", "*.jpg"))

_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#f4f4f4;color:#222;max-width:1400px}
h1{font-size:1.25em} h2{font-size:1.1em;margin-top:1.6em} h3{font-size:1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff} td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right} .ok{color:#2a7a2a} .bad{color:#b22}
.plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start} .plots img{background:#fff;border-radius:4px;width:460px}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:156px;background:#fff;padding:6px;border-radius:4px;font-size:11px;overflow-wrap:anywhere}
figure img{width:144px;height:144px;object-fit:contain;background:#808080;display:inline-block;vertical-align:top}
figure.pair{width:306px} figure.pair img+img{margin-left:6px}
ul.more{font-size:12px} .note{font-size:12px;color:#555}
"""


def claim(folder: str | Path) -> None:
    """Refuse, before anything is read, a folder that is not empty and not a report of ours."""
    from augpipe.pages import claim_folder

    claim_folder(Path(folder), REPORT_MARK, "--html", "a health report", OWN)


def write_report(health, folder: str | Path) -> Path:
    """The page of a health report (a `SourceHealth` or a `DatasetHealth`): what its `page()` says,
    and each problem's image as its `picture` draws it."""
    page = health.page()
    folder = Path(folder)
    claim(folder)
    for sub, _ in OWN:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    title = f"augpipe inspect: {page['path']}"
    overview = "".join(f"<p>{_e(line)}</p>" for line in page["overview"])
    parts = [f"<!doctype html>{REPORT_MARK}<html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>", overview,
             _summary_table(page["problems"], page["figures"]["task"], page.get("unasked", ())),
             _plots_html(page["figures"], folder),
             _problems_html(page["problems"], _Thumbs(folder, health)), _skipped_html(page["skipped"]),
             "</body></html>"]
    index = folder / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def _summary_table(problems: list[dict], task: str, unasked: tuple[str, ...] = ()) -> str:
    """A row a check that found something; the checks that found nothing in one sentence (not those
    of another target kind, a classification set's boxes, nor those the report does not make)."""
    from augpipe.targets import registry

    others = {c for kind in registry().values() for c in kind.audits} - set(registry()[task].audits)
    others |= set(unasked)
    counts: dict[str, int] = {}
    for p in problems:
        counts[p["check"]] = counts.get(p["check"], 0) + 1
    rows, clean = [], []
    for group in GROUPS:
        for check, c in CHECKS.items():
            if c.group != group:
                continue
            if check in counts:
                rows.append(f"<tr><td>{group}</td><td><a href='#{check}'>{_e(c.title)}</a></td>"
                            f"<td class='n bad'>{counts[check]:,}</td></tr>")
            elif check not in others:
                clean.append(c.title)
    table = (f"<table><tr><th>group</th><th>check</th><th>found</th></tr>{''.join(rows)}</table>" if rows
             else "<p class='ok'>No problem found.</p>")
    return f"<h2>Problems</h2>{table}<p class='note'>Checked, nothing found: {_e(', '.join(clean))}.</p>"


def _plots_html(facts: dict, folder: Path) -> str:
    from augpipe.health import plots

    made = []
    for name, draw in plots.FIGURES:
        fig = draw(facts)
        if fig is None:
            continue
        fig.savefig(folder / "plots" / f"{name}.png", dpi=96, bbox_inches="tight")
        plots.close(fig)
        made.append(f"<img src='plots/{name}.png' alt='{name}'>")
    return "<h2>What it holds</h2><div class='plots'>" + "".join(made) + "</div>"


def _problems_html(problems: list[dict], thumbs: _Thumbs) -> str:
    from augpipe.health.report import _line

    by_check: dict[str, list[dict]] = {}
    for p in problems:
        by_check.setdefault(p["check"], []).append(p)
    parts = []
    for check, found in by_check.items():
        parts.append(f"<h3 id='{check}'>{_e(CHECKS[check].title)}: {len(found):,}</h3><div class='grid'>")
        for p in found[:PER_CHECK]:
            # a duplicate, a leak or a conflict beside the first file it names
            images = [src for src in (thumbs.of(path, p.get("where", "")) for path in (p["path"], *p.get("related", ())[:1]))
                      if src]
            wide = " class='pair'" if len(images) > 1 else ""
            parts.append(f"<figure{wide}>" + "".join(f"<img src='{src}' alt=''>" for src in images)
                         + f"<figcaption>{_e(_line(p))}</figcaption></figure>")
        parts.append("</div>")
        if len(found) > PER_CHECK:
            rest = "".join(f"<li>{_e(_line(p))}</li>" for p in found[PER_CHECK:])
            parts.append(f"<ul class='more'>{rest}</ul>")
    return "<h2>Each problem</h2>" + "".join(parts) if parts else ""


def _skipped_html(skipped: list[dict]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{_e(s['path'])}: {_e(s['reason'])}</li>" for s in skipped)
    return f"<h2>Skipped by expand: {len(skipped):,}</h2><ul class='more'>{items}</ul>"


OBJECT = re.compile(r"\bobject (\d+)\b")  # a problem's `where` that names one object of the image


class _Thumbs:
    """A thumbnail an image the report names, drawn by its health (`picture(path, k)`: its labels
    drawn, object k ringed), written once; none for a file that is no image or does not decode."""

    def __init__(self, folder: Path, health):
        self.folder, self.health, self.made = folder, health, {}

    def of(self, path: str, where: str = "") -> str | None:
        named = OBJECT.search(where or "")
        key = (path, int(named.group(1)) if named else None)
        if key not in self.made:
            self.made[key] = self._make(*key, f"thumbs/{len(self.made):05d}.jpg")
        return self.made[key]

    def _make(self, path: str, k: int | None, name: str) -> str | None:
        import cv2

        rgb = self.health.picture(path, k)
        if rgb is None:
            return None
        scale = THUMB / max(rgb.shape[:2])
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(self.folder / name), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        return name


def _e(text) -> str:
    return html.escape(str(text))
