"""`augpipe inspect SOURCE --html DIR`: the health report as a static page (no server, no external
assets): the figures as plots, then every problem with a thumbnail of its image.

DIR/index.html, DIR/plots/*.png (matplotlib, Agg), DIR/thumbs/*.jpg. Only a new or empty folder,
or a report augpipe wrote there before, is written into.
"""

from __future__ import annotations

import html
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


def write_report(facts: dict, folder: str | Path, store) -> Path:
    """The page for `check_source`'s facts; `store`: the source's, to read the problems' images."""
    folder = Path(folder)
    claim(folder)
    for sub, _ in OWN:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    title = f"augpipe inspect: {facts['path']}"
    parts = [f"<!doctype html>{REPORT_MARK}<html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>", _overview(facts),
             _summary_table(facts["problems"]), _plots_html(facts, folder),
             _problems_html(facts["problems"], folder, store), _skipped_html(facts["skipped"]), "</body></html>"]
    page = folder / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page


def _overview(f: dict) -> str:
    from augpipe.health.report import FORMAT_NAMES

    splits = ", ".join(f"{s} {n:,}" for s, n in f["splits"].items())
    text = (f"{FORMAT_NAMES.get(f['format'], f['format'])} ({f['task']}), {f['images']:,} images ({splits}), "
            f"{len(f['class_names'])} classes")
    return f"<p>{_e(text)}</p>" + "".join(f"<p class='note'>{_e(w)}</p>" for w in f.get("warnings", ()))


def _summary_table(problems: list[dict]) -> str:
    """A row a check that found something; the checks that found nothing in one sentence."""
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
            else:
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
    return "<h2>What the source holds</h2><div class='plots'>" + "".join(made) + "</div>"


def _problems_html(problems: list[dict], folder: Path, store) -> str:
    from augpipe.health.report import _line

    by_check: dict[str, list[dict]] = {}
    for p in problems:
        by_check.setdefault(p["check"], []).append(p)
    parts = []
    thumbs = _Thumbs(folder, store)
    for check, found in by_check.items():
        parts.append(f"<h3 id='{check}'>{_e(CHECKS[check].title)}: {len(found):,}</h3><div class='grid'>")
        for p in found[:PER_CHECK]:
            # a duplicate, a leak or a conflict beside the first file it names
            images = [src for src in (thumbs.of(path) for path in (p["path"], *p.get("related", ())[:1])) if src]
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
    return f"<h2>expand will skip {len(skipped):,}</h2><ul class='more'>{items}</ul>"


class _Thumbs:
    """A thumbnail a source image, written once; none for a file that is no image or does not decode."""

    def __init__(self, folder: Path, store):
        self.folder, self.store, self.made = folder, store, {}

    def of(self, path: str) -> str | None:
        if path not in self.made:
            self.made[path] = self._make(path, f"thumbs/{len(self.made):05d}.jpg")
        return self.made[path]

    def _make(self, path: str, name: str) -> str | None:
        import cv2

        from augpipe.decode import decode
        from augpipe.errors import SkipInput
        from augpipe.formats.base import is_image
        from augpipe.options import DEFAULT_MAX_PIXELS
        from augpipe.store import read_source

        if not is_image(path):
            return None
        try:
            rgb = decode(read_source(self.store, path), DEFAULT_MAX_PIXELS).rgb
        except SkipInput:
            return None
        scale = THUMB / max(rgb.shape[:2])
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(self.folder / name), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        return name


def _e(text) -> str:
    return html.escape(str(text))
