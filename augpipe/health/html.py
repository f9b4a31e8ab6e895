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
    """The page of a `health.SourceHealth`: its facts, and each problem's image read again from
    its source, with its labels drawn."""
    facts = health.facts
    folder = Path(folder)
    claim(folder)
    for sub, _ in OWN:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    title = f"augpipe inspect: {facts['path']}"
    parts = [f"<!doctype html>{REPORT_MARK}<html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>", _overview(facts),
             _summary_table(facts["problems"]), _plots_html(facts, folder),
             _problems_html(facts["problems"], _Thumbs(folder, health)), _skipped_html(facts["skipped"]), "</body></html>"]
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
    return f"<h2>expand will skip {len(skipped):,}</h2><ul class='more'>{items}</ul>"


OBJECT = re.compile(r"\bobject (\d+)\b")  # a problem's `where` that names one object of the image


class _Thumbs:
    """A thumbnail a source image, its labels drawn by its kind (the object a problem names outlined
    in red), written once; none for a file that is no image or does not decode."""

    def __init__(self, folder: Path, health):
        self.folder, self.health, self.made = folder, health, {}
        self.files = {f.relpath: f for f in health.scan.files}

    def of(self, path: str, where: str = "") -> str | None:
        named = OBJECT.search(where or "")
        key = (path, int(named.group(1)) if named else None)
        if key not in self.made:
            self.made[key] = self._make(path, key[1], f"thumbs/{len(self.made):05d}.jpg")
        return self.made[key]

    def _make(self, path: str, k: int | None, name: str) -> str | None:
        import cv2

        from augpipe.formats.base import is_image

        if not is_image(path):
            return None
        rgb = self._drawn(path, k)
        if rgb is None:
            return None
        scale = THUMB / max(rgb.shape[:2])
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(self.folder / name), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        return name

    def _drawn(self, path: str, k: int | None):
        """The image with its labels as expand would load them; where they do not load, its boxes
        as the annotation gives them."""
        from augpipe.decode import decode
        from augpipe.errors import SkipInput
        from augpipe.options import DEFAULT_MAX_PIXELS
        from augpipe.sample import SourceItem, load_sample
        from augpipe.store import read_source

        kind, classes, f = self.health.kind, self.health.scan.classes, self.files.get(path)
        try:
            data = read_source(self.health.store, path)
            rgb = decode(data, DEFAULT_MAX_PIXELS).rgb
        except SkipInput:
            return None
        if f is None:
            return rgb
        item = SourceItem(f.relpath, None, (), target=f.target)
        try:
            extra = next((read_source(self.health.store, n) for n in kind.extra_files(item)), None)
            state = load_sample(data, item, kind, DEFAULT_MAX_PIXELS, extra).target
            drawn = kind.draw(rgb, kind.values(state, rgb), classes) if state is not None else rgb
        except SkipInput:
            drawn = rgb
        return _outlined(drawn, f.target, k)


def _outlined(rgb, target, k: int | None):
    """Object k of an annotation's boxes outlined in red, as the annotation gives it (clipped to show)."""
    import dataclasses

    import cv2

    from augpipe.formats.base import Objects

    if k is None or not isinstance(target, Objects) or k >= len(target.boxes):
        return rgb
    h, w = rgb.shape[:2]
    x, y, bw, bh = dataclasses.replace(target, canvas=(w, h)).xywh()[k]
    least = max(h, w) / 20  # a tiny box is ringed large enough to be seen on a thumbnail
    if bw < least or bh < least:
        cx, cy = x + bw / 2, y + bh / 2
        bw, bh = max(bw, least), max(bh, least)
        x, y = cx - bw / 2, cy - bh / 2
    out = rgb.copy()
    p0 = (int(min(max(x, 0), w - 1)), int(min(max(y, 0), h - 1)))
    p1 = (int(min(max(x + bw, 0), w - 1)), int(min(max(y + bh, 0), h - 1)))
    cv2.rectangle(out, p0, p1, (255, 0, 0), max(2, round(max(h, w) / 100)))
    return out


def _e(text) -> str:
    return html.escape(str(text))
