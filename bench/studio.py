"""The studio's latency in a real browser: from an edit to the first tile, and to a whole grid.

Writes a COCO source of N photos-like scenes (640×480 JPEG, 2-6 boxes each), starts
`augpipe studio` on it as a user would, and drives Debian's chromium (headless, through selenium
and chromedriver) over the page: it waits for the first grid, selects a transform in the recipe,
then changes a parameter in the form E times (each change an `/api/edit` and a render). For each
edit it measures, in the page, from the field's change event to the first tile of the new render
shown (its image loaded) and to the whole grid (4 rows × 4 tiles: the original and 3 copies,
320 px). The baseline, measured in the same run: `augpipe preview` making the same 4 × 4 sheet
(a new process each time, as iterating on a recipe from the command line goes).

    pip install -e '.[studio,test]'; apt-get install chromium chromium-driver
    python bench/studio.py [--images 120] [--edits 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

RECIPE = """name: bench
copies: 3
output: {format: jpeg, quality: 90}
bbox_params: {min_visibility: 0.3}
transforms:
  - HorizontalFlip: {p: 0.5}
  - Affine: {scale: [0.8, 1.2], translate_percent: [-0.1, 0.1], rotate: [-10, 10], border_mode: 0, p: 0.8}
  - ColorJitter: {brightness: [0.8, 1.2], contrast: [0.8, 1.2], saturation: [0.8, 1.2], p: 0.5}
  - GaussianBlur: {blur_limit: [3, 5], p: 0.2}
"""

# In the page: a parameter of the selected transform changed, then the time to the first tile of
# the next render (its picture loaded) and to the whole grid, from the change event.
EDIT = """
const [id, value, done] = arguments;
const box = document.getElementById('grid');
const before = box.firstElementChild && box.firstElementChild.dataset.render;
const input = document.getElementById(id);
let first = null;
const t0 = performance.now();
const check = () => {
  const grid = box.firstElementChild;
  const fresh = grid && grid.dataset.render !== before;
  if (fresh && first === null && box.hasAttribute('data-first-ms')) first = performance.now() - t0;
  if (fresh && box.getAttribute('data-render') === grid.dataset.render) {
    observer.disconnect();
    done({first: first === null ? performance.now() - t0 : first, grid: performance.now() - t0,
          tiles: grid.querySelectorAll('figure.tile').length, page_first: +box.getAttribute('data-first-ms'),
          page_grid: +box.getAttribute('data-grid-ms')});
  }
};
const observer = new MutationObserver(check);
observer.observe(box, {attributes: true, childList: true, subtree: true});
input.value = value;
input.dispatchEvent(new Event('change', {bubbles: true}));
"""


def write_source(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "default").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i in range(n):
        h, w = 480, 640
        y, x = np.mgrid[0:h, 0:w]
        base = (np.sin(x / rng.uniform(20, 80)) + np.cos(y / rng.uniform(20, 80))) * 40 + 120
        image = np.clip(np.stack([base + rng.uniform(-40, 40) for _ in range(3)], -1)
                        + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        for k in range(int(rng.integers(2, 7))):
            bw, bh = int(rng.integers(40, 200)), int(rng.integers(40, 200))
            bx, by = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            c = int(rng.integers(0, 3))
            colour = [(220, 60, 40), (40, 160, 60), (40, 80, 220)][c]
            cv2.rectangle(image, (bx, by), (bx + bw, by + bh), colour, -1)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                                "bbox": [bx, by, bw, bh], "area": bw * bh, "iscrowd": 0})
        name = f"scene_{i:04d}.jpg"
        cv2.imwrite(str(root / "default" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(("red", "green", "blue"))]
    (root / "annotations" / "instances_default.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                       "categories": cats}))
    return root


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", "--window-size=1700,1100", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def studio_times(source: Path, work: Path, edits: int) -> tuple[dict, list[dict]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc = subprocess.Popen([sys.executable, "-m", "augpipe", "studio", str(source), "--recipe", "bench.yaml",
                             "--port", "0", "--no-browser"], cwd=work, stdout=subprocess.PIPE, text=True)
    driver = None
    try:
        said = []
        for line in proc.stdout:
            said.append(line)
            if line.startswith("open "):
                break
        url = said[-1].split()[1]
        kind = said[0].split("(")[1].split(",")[0]  # "augpipe studio: SOURCE (detection, N images ...)"
        driver = browser(work / "profile")
        driver.set_script_timeout(60)
        started = time.perf_counter()
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "grid").get_attribute("data-render"))
        cold = {"page_to_grid_s": time.perf_counter() - started}
        next(b for b in driver.find_elements(By.CSS_SELECTOR, "#chosen button") if b.text == "Affine").click()
        wait.until(lambda d: d.find_elements(By.ID, "param-rotate"))
        runs = []
        for k in range(edits):
            angle = 5 + k
            runs.append(driver.execute_async_script(EDIT, "param-rotate", f"[-{angle}, {angle}]"))
        return cold, runs, kind
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=30)


def preview_seconds(source: Path, work: Path, runs: int = 3) -> list[float]:
    times = []
    for k in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "augpipe", "preview", str(source), "--recipe", "bench.yaml", "--rows", "4",
                        "--copies", "3", "--seed", str(k), "--out", f"sheet{k}.png"], cwd=work, check=True,
                       capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--edits", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = write_source(tmp / "scenes", args.images)
        work = tmp / "work"
        work.mkdir()
        (work / "bench.yaml").write_text(RECIPE)
        cold, runs, kind = studio_times(source, work, args.edits)
        baseline = preview_seconds(source, work)
    first = [r["first"] for r in runs]
    grid = [r["grid"] for r in runs]
    print(f"source: {args.images} COCO scenes ({kind}), 640×480 JPEG; grid: {runs[0]['tiles']} tiles (4 rows × 4, 320 px)")
    print(f"studio, page opened to first grid: {cold['page_to_grid_s']:.2f} s")
    print(f"studio, after an edit ({len(runs)} edits): first tile median {statistics.median(first):.0f} ms "
          f"(max {max(first):.0f}), whole grid median {statistics.median(grid):.0f} ms (max {max(grid):.0f})")
    print("  each: " + ", ".join(f"{r['first']:.0f}/{r['grid']:.0f}" for r in runs))
    med = statistics.median(baseline)
    print(f"baseline, augpipe preview (a new process, the same 4 × 4 sheet): median {med:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in baseline)})")
    print(f"ratio: a grid in the studio is {med * 1000 / statistics.median(grid):.1f}× faster than the preview command")


if __name__ == "__main__":
    main()
