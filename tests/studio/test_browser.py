"""The studio's page in a real headless browser (Debian's chromium and its driver), against the
studio started as the command does it: edits, errors inline, save, and tiles that are expand's
very rows."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import ENV, make_folder, make_scenes, rows

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
RECIPE = """\
name: studio-test
copies: 3
keep_original: true
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - RandomBrightnessContrast: {p: 0.5}
"""
WAIT = 20  # seconds for anything the page does


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing (CI installs chromium and chromium-driver)")
        pytest.skip(f"{', '.join(missing)} missing")
    return pytest.importorskip("selenium.webdriver")


class Studio:
    """`augpipe studio` in a process of its own; its URL read from what it prints."""

    def __init__(self, source: Path, recipe: Path | None, cwd: Path):
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "augpipe", "studio", str(source), *(["--recipe", str(recipe)] if recipe else []),
             "--port", "0", "--no-browser"], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_for_url()
        self.origin = self.url.split("/?", 1)[0]

    def _drain(self):
        for line in self.proc.stdout:
            self.output.append(line)

    def _wait_for_url(self) -> str:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            for line in list(self.output):
                found = re.search(r"http://\S+[?&]token=\S+", line)
                if found:
                    return found.group(0)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError("the studio printed no URL:\n" + "".join(self.output))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = _browser_or_skip()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic", "--window-size=1600,1000"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studio")
    make_folder(root / "data", per_class=6, size=64)
    (root / "recipe.yaml").write_text(RECIPE)
    return root


@pytest.fixture(scope="module")
def studio(work):
    studio = Studio(work / "data", work / "recipe.yaml", work)
    try:
        yield studio
    finally:
        studio.stop()


# ---------------------------------------------------------------- what the page shows


def until(browser, what, message: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(lambda d: what(), message)


def js(browser, script: str, *args):
    return browser.execute_script(script, *args)


def grid_done(browser, after: str | None = None) -> str:
    """Waits for a complete grid (newer than render `after`): its render id."""
    from selenium.common.exceptions import TimeoutException

    try:
        until(browser, lambda: js(browser, "return document.getElementById('grid').dataset.render") not in (None, after),
              "")
    except TimeoutException:
        said = js(browser, "return [document.getElementById('grid-status').textContent, "
                           "document.getElementById('messages').textContent]")
        raise AssertionError(f"no complete grid after render {after}; the page says {said}") from None
    return js(browser, "return document.getElementById('grid').dataset.render")


def tiles(browser) -> list[dict]:
    return js(browser, """return [...document.querySelectorAll('#grid .tile')].map(t => ({
        row: +t.dataset.row, copy: +t.dataset.copy, source: t.dataset.source, title: t.title,
        src: t.dataset.src, raw: t.dataset.raw, img: (t.querySelector('img') || {}).src,
        caption: t.querySelector('figcaption').textContent}))""")


def yaml_text(browser) -> str:
    return js(browser, "return document.getElementById('yaml').value")


def open_page(browser, studio) -> str:
    browser.get(studio.url)  # the token once: the cookie, then /
    return grid_done(browser)


def fetch_bytes(browser, url: str) -> bytes:
    """The bytes at url, fetched by the page itself (its cookie), as base64 through the driver."""
    out = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {credentials: 'same-origin'}).then(async r => {
          if (!r.ok) return done('HTTP ' + r.status);
          const bytes = new Uint8Array(await r.arrayBuffer());
          let s = '';
          for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
          done({b64: btoa(s)});
        }).catch(e => done(String(e)));""", url)
    assert isinstance(out, dict), f"{url}: {out}"
    return base64.b64decode(out["b64"])


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def raw_pictures(browser, shown: list[dict]) -> dict:
    return {(t["row"], t["copy"]): (t["source"], pixels(fetch_bytes(browser, t["raw"]))) for t in shown}


def assert_changed(browser, pictures: dict, shown: list[dict]):
    """The tiles shown now differ from the pictures of the same places (same sources) before."""
    assert shown
    for t in shown:
        source, before = pictures[(t["row"], t["copy"])]
        assert t["source"] == source
        now = pixels(fetch_bytes(browser, t["raw"]))
        assert now.shape != before.shape or not np.array_equal(now, before), t


def select_transform(browser, name: str):
    from selenium.webdriver.common.by import By

    next(b for b in browser.find_elements(By.CSS_SELECTOR, "#chosen button") if b.text == name).click()
    until(browser, lambda: browser.find_element(By.ID, "selected-name").text == name, f"{name} not selected")


# ---------------------------------------------------------------- the tests


def test_palette_adds_a_transform_and_the_tiles_show_it(browser, studio):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    render = open_page(browser, studio)
    before = tiles(browser)
    assert before and all(t["img"] for t in before)
    pictures = raw_pictures(browser, before)
    assert "InvertImg" not in yaml_text(browser)
    assert not any("InvertImg" in t["title"] for t in before)
    browser.find_element(By.ID, "filter").send_keys("invert")
    shown = [b.get_attribute("data-transform") for b in browser.find_elements(By.CSS_SELECTOR, "#palette button")
             if b.is_displayed()]
    assert "InvertImg" in shown and "HorizontalFlip" not in shown and len(shown) < 5  # names and doc lines
    browser.find_element(By.CSS_SELECTOR, '#palette [data-transform="InvertImg"]').click()
    until(browser, lambda: "- InvertImg:" in yaml_text(browser), "InvertImg not added to the YAML")
    grid_done(browser, render)
    after = tiles(browser)
    # lineage of the new grid: the added transform fired on some copies, never on an original
    assert any("InvertImg" in t["title"] for t in after if t["copy"] > 0)
    assert not any("InvertImg" in t["title"] for t in after if t["copy"] == 0)
    assert_changed(browser, pictures, [t for t in after if "InvertImg" in t["title"]])
    # the edit is the editor's too: Ctrl+Z there takes it back
    editor = browser.find_element(By.ID, "yaml")
    js(browser, "arguments[0].focus()", editor)
    editor.send_keys(Keys.CONTROL, "z")
    until(browser, lambda: "InvertImg" not in yaml_text(browser), "Ctrl+Z did not undo the add")


def test_a_parameter_changed_in_the_form_changes_the_yaml_and_the_tiles(browser, studio):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    render = open_page(browser, studio)
    copies = [t for t in tiles(browser) if t["copy"] > 0]
    unflipped = [t for t in copies if "HorizontalFlip" not in t["title"]]
    assert unflipped, "p=0.5 flipped every copy: no change to see"
    pictures = raw_pictures(browser, unflipped)
    select_transform(browser, "HorizontalFlip")
    field = browser.find_element(By.ID, "param-p")
    assert field.get_attribute("type") == "number"
    assert "[0, 1]" in browser.find_element(By.CSS_SELECTOR, 'label[for="param-p"]').text
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("1", Keys.TAB)
    until(browser, lambda: re.search(r"HorizontalFlip: \{p: 1\}", yaml_text(browser)), "p not set in the YAML")
    grid_done(browser, render)
    copies = [t for t in tiles(browser) if t["copy"] > 0]
    assert copies and all("HorizontalFlip" in t["title"] for t in copies)
    assert_changed(browser, pictures, [t for t in copies if (t["row"], t["copy"]) in pictures])


def test_a_yaml_error_shows_at_its_line_and_the_last_good_grid_stays(browser, studio):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    render = open_page(browser, studio)
    shown = [t["img"] for t in tiles(browser)]
    editor = browser.find_element(By.ID, "yaml")
    editor.send_keys(Keys.CONTROL, Keys.END)
    editor.send_keys("  - NoSuchTransform: {p: 0.5}\n")
    bad_line = yaml_text(browser).split("\n").index("  - NoSuchTransform: {p: 0.5}") + 1
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#inline .error"), "no inline error")
    inline = browser.find_element(By.CSS_SELECTOR, "#inline .error")
    assert int(inline.get_attribute("data-line")) == bad_line
    message = inline.get_attribute("title")
    assert "NoSuchTransform" in inline.text and message.endswith(inline.text)
    listed = browser.find_element(By.CSS_SELECTOR, "#messages .error").text
    assert listed == f"line {bad_line}: {message}"
    mark = browser.find_elements(By.CSS_SELECTOR, "#gutter div")[bad_line - 1]
    assert mark.get_attribute("class") == "error" and mark.text == str(bad_line)
    # a one-line band on its own line, after the line's text: the lines below stay readable
    box = js(browser, "const r = document.getElementById('yaml').getBoundingClientRect(); return [r.left, r.top]")
    line_top = 8 + (bad_line - 1) * 20  # the textarea's padding, the lines above
    assert line_top - 1 <= inline.rect["y"] - box[1] and inline.rect["y"] - box[1] + inline.rect["height"] <= line_top + 21
    char = js(browser, "const c = document.createElement('canvas').getContext('2d'); "
                       "c.font = getComputedStyle(document.getElementById('yaml')).font; return c.measureText('x').width")
    assert inline.rect["x"] - box[0] >= 10 + len("  - NoSuchTransform: {p: 0.5}") * char
    assert js(browser, "return document.getElementById('yaml').scrollLeft") == 0
    assert [t["img"] for t in tiles(browser)] == shown
    assert js(browser, "return document.getElementById('grid').dataset.render") == render
    # mended: the message goes, a new grid comes
    editor.send_keys(Keys.BACKSPACE * (len("  - NoSuchTransform: {p: 0.5}\n") + 1), "\n")
    grid_done(browser, render)
    assert not browser.find_elements(By.CSS_SELECTOR, "#inline .error, #messages .error, #gutter .error")


def test_a_dry_run_error_shows_at_its_line_and_brings_back_the_last_good_grid(browser, studio):
    from selenium.webdriver.common.by import By

    render = open_page(browser, studio)
    shown = [t["img"] for t in tiles(browser)]
    text = yaml_text(browser) + "  - RandomCrop: {height: 1000, width: 1000}\n"
    js(browser, "const t = document.getElementById('yaml'); t.value = arguments[0]; t.dispatchEvent(new Event('input'))", text)
    line = text.split("\n").index("  - RandomCrop: {height: 1000, width: 1000}") + 1
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#inline .error"), "no inline error")
    inline = browser.find_element(By.CSS_SELECTOR, "#inline .error")
    # a line too long for a band beside it: a mark at the right, the message on hover and in the list
    assert int(inline.get_attribute("data-line")) == line and "RandomCrop" in inline.get_attribute("title")
    assert inline.text in ("!", "") or "RandomCrop" in inline.text
    assert js(browser, "return document.getElementById('grid').dataset.render") == render
    assert [t["img"] for t in tiles(browser)] == shown
    assert not browser.find_elements(By.CSS_SELECTOR, "#grid .tile.failed")


def test_reshuffle_shows_another_seed_and_its_command(browser, studio):
    from selenium.webdriver.common.by import By

    render = open_page(browser, studio)
    assert browser.find_element(By.ID, "grid-status").text.startswith("seed 0 ")
    browser.find_element(By.ID, "reshuffle").click()
    grid_done(browser, render)
    seed = browser.find_element(By.ID, "seed").get_attribute("value")
    assert seed != "0"
    assert browser.find_element(By.ID, "grid-status").text.startswith(f"seed {seed} ")
    assert f"--seed {seed}" in browser.find_element(By.ID, "command").text


def test_save_writes_the_recipe_and_keeps_the_previous_one(browser, studio, work):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, studio)
    recipe = work / "recipe.yaml"
    previous = recipe.read_text()
    editor = browser.find_element(By.ID, "yaml")
    editor.send_keys("# saved by the browser test\n")
    browser.find_element(By.ID, "save-path").clear()
    browser.find_element(By.ID, "save").click()
    until(browser, lambda: browser.find_element(By.ID, "save-status").text.startswith("saved"), "not saved")
    assert recipe.read_text() == yaml_text(browser)
    assert recipe.read_text().endswith("# saved by the browser test\n")
    assert (work / "recipe.yaml.bak").read_text() == previous
    # a new path in the working folder
    browser.find_element(By.ID, "save-path").send_keys("other.yaml", Keys.ENTER)  # Enter saves
    until(browser, lambda: "other.yaml" in browser.find_element(By.ID, "save-status").text, "not saved as other.yaml")
    assert (work / "other.yaml").read_text() == yaml_text(browser)


def test_a_tiles_raw_bytes_are_the_row_expand_writes(browser, studio, work, tmp_path):
    open_page(browser, studio)
    seed = int(js(browser, "return document.getElementById('seed').value"))
    tile = next(t for t in tiles(browser) if t["copy"] == 2)
    shown = fetch_bytes(browser, tile["raw"])
    recipe = tmp_path / "shown.yaml"
    recipe.write_text(yaml_text(browser))
    out = tmp_path / "expanded"
    done = subprocess.run([sys.executable, "-m", "augpipe", "expand", str(work / "data"), "--recipe", str(recipe),
                           "--seed", str(seed), "--copies", "3", "--workers", "1", "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    row = next(r for r in rows(out) if r["copy"] == 2 and r["source"].endswith(tile["source"]))
    expected = pixels(row["image"]["bytes"])
    assert np.array_equal(pixels(shown), expected)
    other = next(r for r in rows(out) if r["copy"] == 1 and r["source"].endswith(tile["source"]))
    assert not np.array_equal(pixels(other["image"]["bytes"]), expected), "copies 1 and 2 alike: nothing compared"


def test_tab_to_a_tile_and_enter_opens_its_details(browser, studio):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    render = open_page(browser, studio)
    browser.find_element(By.ID, "draw").click()  # the last control before the grid: raw bytes now
    render = grid_done(browser, render)
    first = tiles(browser)[0]
    assert first["img"].endswith(first["raw"])
    browser.find_element(By.ID, "draw").click()
    grid_done(browser, render)
    js(browser, "document.getElementById('draw').focus()")
    for _ in range(10):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if js(browser, "return document.activeElement.classList.contains('tile')"):
            break
    focused = js(browser, "const t = document.activeElement; return [t.dataset.source, t.dataset.copy]")
    assert focused[0], "tab never reached a tile"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    dialog = browser.find_element(By.ID, "details")
    until(browser, lambda: dialog.get_attribute("open") is not None, "details not opened")
    assert focused[0] in browser.find_element(By.ID, "details-title").text
    assert re.search(r"\d+ × \d+ px", dialog.text)
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    until(browser, lambda: dialog.get_attribute("open") is None, "details not closed")
    assert js(browser, "return document.activeElement.dataset.source") == focused[0]


def test_detection_boxes_are_drawn_on_the_tiles(browser, work):
    source = make_scenes(work / "yolo", n=6, size=(96, 72), fmt="yolo")
    (work / "detect.yaml").write_text("copies: 1\ntransforms:\n  - HorizontalFlip: {p: 0.5}\n")
    studio = Studio(source, work / "detect.yaml", work)
    try:
        open_page(browser, studio)
        tile = next(t for t in tiles(browser) if t["copy"] == 0)
        drawn, raw = pixels(fetch_bytes(browser, tile["src"])), pixels(fetch_bytes(browser, tile["raw"]))
        # scaled as the studio scales a small picture up (nearest): only what is drawn differs much
        scaled = cv2.resize(raw, drawn.shape[1::-1], interpolation=cv2.INTER_NEAREST).astype(int)
        differs = np.abs(drawn.astype(int) - scaled).max(axis=2) > 80
        assert differs.mean() > 0.01, "no box outline drawn on the tile"
        assert re.search(r"box|disc", tile["caption"] + tile["title"]), tile
    finally:
        studio.stop()


def test_the_page_without_its_token_is_refused(browser, studio):
    from selenium.webdriver.common.by import By

    open_page(browser, studio)
    browser.delete_all_cookies()
    browser.get(studio.origin + "/")
    said = browser.find_element(By.TAG_NAME, "body").text
    assert "token" in said and "printed" in said
    assert not browser.find_elements(By.ID, "yaml")
    open_page(browser, studio)  # the URL with the token lets it in again
    assert browser.find_elements(By.CSS_SELECTOR, "#grid .tile")


def test_pick_by_class_and_by_file(browser, studio):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    render = open_page(browser, studio)
    Select(browser.find_element(By.ID, "pick-mode")).select_by_value("class")
    render = grid_done(browser, render)  # the first class's
    assert {t["source"].split("/")[0] for t in tiles(browser)} == {"cat"}
    Select(browser.find_element(By.ID, "pick-class")).select_by_visible_text("dog")
    render = grid_done(browser, render)
    assert {t["source"].split("/")[0] for t in tiles(browser)} == {"dog"}
    Select(browser.find_element(By.ID, "pick-mode")).select_by_value("files")
    field = browser.find_element(By.ID, "pick-file")
    field.send_keys("cat_003")  # part of a path: the training image that has it
    field.send_keys(Keys.ENTER)
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#pick-files button"), "no file chosen")
    grid_done(browser, render)
    assert {t["source"] for t in tiles(browser)} == {"cat/cat_003.jpg"}


def test_a_file_picked_by_part_of_its_path_and_one_the_server_refuses(browser, studio):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    first = open_page(browser, studio)
    Select(browser.find_element(By.ID, "pick-mode")).select_by_value("files")
    field = browser.find_element(By.ID, "pick-file")
    field.send_keys("zzz_nothing", Keys.ENTER)
    until(browser, lambda: "zzz_nothing" in browser.find_element(By.ID, "pick-status").text, "no word on no match")
    assert not browser.find_elements(By.CSS_SELECTOR, "#pick-files button")
    field.clear()
    field.send_keys("dog_00", Keys.ENTER)  # a fragment: the first training image that has it, in full
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#pick-files button"), "no file chosen")
    chip = browser.find_element(By.CSS_SELECTOR, "#pick-files button").get_attribute("aria-label")
    assert re.fullmatch(r"Remove dog/dog_00\d\.jpg", chip), chip
    render = grid_done(browser, first)  # the render of the chosen file, not the first one
    good = {t["source"] for t in tiles(browser)}
    assert good == {chip.removeprefix("Remove ")}
    # a path the server does not know (as a stale or hand-made list would give): the page lists it,
    # the server refuses the render; the picker says so and drops it, the other file's grid comes back
    js(browser, """const real = window.fetch;
        window.fetch = (url, init) => String(url).startsWith('/api/files')
          ? Promise.resolve(new Response(JSON.stringify({files: ['dog/not_there.jpg']}))) : real(url, init);""")
    field.send_keys("not_there", Keys.ENTER)
    until(browser, lambda: "not a training image" in browser.find_element(By.ID, "pick-status").text,
          "the refusal is not said by the picker")
    assert "dog/not_there.jpg" in browser.find_element(By.ID, "pick-status").text
    until(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#pick-files button")) == 1, "bad chip kept")
    assert not browser.find_elements(By.CSS_SELECTOR, "#messages li, #inline div")  # not the recipe's fault
    render = grid_done(browser, render)
    assert {t["source"] for t in tiles(browser)} == good
    # the other controls still show their effect: Draw targets at once, a seed a new grid
    browser.find_element(By.ID, "draw").click()
    assert all(t["img"].endswith(t["raw"]) for t in tiles(browser))
    render = grid_done(browser, render)
    seed = browser.find_element(By.ID, "seed")
    seed.send_keys(Keys.CONTROL, "a")
    seed.send_keys("1234567")
    grid_done(browser, render)
    assert browser.find_element(By.ID, "grid-status").text.startswith("seed 1234567 ")
    assert all(t["img"].endswith(t["raw"]) for t in tiles(browser))
    # seven digits fit their field
    assert js(browser, "const s = document.getElementById('seed'); return s.scrollWidth <= s.clientWidth")
    browser.find_element(By.ID, "draw").click()


def test_rows_and_copies_past_their_limits_are_clamped_and_said(browser, studio):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    render = open_page(browser, studio)
    rows_field = browser.find_element(By.ID, "rows")
    rows_field.send_keys(Keys.CONTROL, "a")
    rows_field.send_keys("12")
    until(browser, lambda: rows_field.get_attribute("value") == "8", "rows not clamped")
    assert "rows: 1 to 8, set to 8" in browser.find_element(By.ID, "limit-note").text
    grid_done(browser, render)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#grid .rowhead")) == 8
    rows_field.send_keys(Keys.CONTROL, "a")
    rows_field.send_keys("2")
    until(browser, lambda: not browser.find_element(By.ID, "limit-note").text, "the note stays")


def test_a_tuple_parameter_takes_yaml_text(browser, studio):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, studio)
    select_transform(browser, "RandomBrightnessContrast")
    field = browser.find_element(By.ID, "param-brightness_limit")
    assert field.get_attribute("type") == "text"  # a number field would make "[-0.3, 0.3]" "-0.30.3"
    field.send_keys("[-0.3, 0.3]", Keys.TAB)
    until(browser, lambda: "brightness_limit: [-0.3, 0.3]" in yaml_text(browser), "the tuple not in the YAML")
    # a list typed into a plain number's field stays a list (the recipe's check then says what it thinks)
    select_transform(browser, "HorizontalFlip")
    field = browser.find_element(By.ID, "param-p")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("[3, 9]")
    assert field.get_attribute("value") == "[3, 9]"


def test_keyboard_in_the_palette(browser, studio):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, studio)
    search = browser.find_element(By.ID, "filter")
    search.clear()
    search.send_keys("vertical")
    ActionChains(browser).send_keys(Keys.TAB).perform()  # to the first transform shown, not a group
    first = [b for b in browser.find_elements(By.CSS_SELECTOR, "#palette button") if b.is_displayed()][0]
    assert js(browser, "return document.activeElement.dataset.transform") == first.get_attribute("data-transform")
    js(browser, "document.getElementById('filter').focus()")
    ActionChains(browser).send_keys(Keys.ENTER).perform()  # adds the first transform shown
    name = first.get_attribute("data-transform")
    until(browser, lambda: f"- {name}:" in yaml_text(browser), f"{name} not added by Enter")
    until(browser, lambda: browser.find_element(By.ID, "selected-name").text == name, "the new one not selected")
    until(browser, lambda: js(browser, "return document.activeElement.id") == "param-p", "focus not on its first field")
    # counts follow the filter; nothing matching says so
    shown = [b for b in browser.find_elements(By.CSS_SELECTOR, "#palette button") if b.is_displayed()]
    counts = [int(c.text.strip("()")) for c in browser.find_elements(By.CSS_SELECTOR, "#palette .count") if c.is_displayed()]
    assert sum(counts) == len(shown) > 0
    assert not browser.find_element(By.ID, "palette-none").is_displayed()
    search.clear()
    search.send_keys("zzzz")
    until(browser, lambda: browser.find_element(By.ID, "palette-none").is_displayed(), "no word on no match")
    assert browser.find_element(By.ID, "palette-none").text == "No transform matches."
    search.clear()
    search.send_keys(" ", Keys.BACKSPACE)


@pytest.mark.parametrize("width", [1600, 1920])
def test_four_columns_fit_and_the_editor_wraps(browser, studio, width):
    from selenium.webdriver.common.by import By

    size = browser.get_window_size()
    try:
        browser.set_window_size(width, 1000)
        open_page(browser, studio)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#grid .colhead")) == 5  # the row heads', 4 columns
        middle = js(browser, "const m = document.querySelector('.middle'); return [m.scrollWidth, m.clientWidth]")
        assert middle[0] <= middle[1], middle
        assert js(browser, "return document.body.scrollWidth <= innerWidth")
        editor = browser.find_element(By.ID, "yaml")
        long_line = "# " + "a long comment line " * 8
        js(browser, "const t = arguments[0]; t.value = arguments[1] + t.value; t.dispatchEvent(new Event('input'))",
           editor, long_line + "\n")
        assert js(browser, "const t = arguments[0]; return [t.scrollWidth <= t.clientWidth, t.scrollLeft]", editor) == [True, 0]
        # the gutter's line 2 sits beside the text's line 2, below the wrapped line 1
        second = browser.find_elements(By.CSS_SELECTOR, "#gutter div")[1].rect["y"]
        assert second - editor.rect["y"] >= 8 + 2 * 20
        # the run command wraps at spaces
        command = js(browser, "const s = getComputedStyle(document.getElementById('command')); "
                              "return [s.whiteSpace, s.wordBreak, s.overflowWrap]")
        assert command[:2] == ["pre-wrap", "normal"] and command[2] != "anywhere"
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_a_mosaic_tiles_details_list_donors_below(browser, work):
    from selenium.webdriver.common.by import By

    (work / "mosaic.yaml").write_text("copies: 1\noutput: {format: png}\ntransforms:\n"
                                      "  - Mosaic: {p: 1.0, target_size: [96, 96]}\n")
    source = make_scenes(work / "mosaic_scenes", n=8, size=(96, 72), fmt="yolo")  # Mosaic wants targets
    studio = Studio(source, work / "mosaic.yaml", work)
    try:
        open_page(browser, studio)
        fig = browser.find_element(By.CSS_SELECTOR, '#grid .tile[data-copy="1"]')
        fig.click()
        dialog = browser.find_element(By.ID, "details")
        until(browser, lambda: dialog.get_attribute("open") is not None, "details not opened")
        listed = browser.find_element(By.CSS_SELECTOR, "#details .lineage").text
        assert "donors: see below" in listed and "donors =" not in listed and "source" not in listed
        assert re.search(r"^cells = ", listed, re.M), listed  # its other parameters
        assert browser.find_elements(By.CSS_SELECTOR, "#details .donor")
        assert js(browser, "const d = document.getElementById('details'); return d.scrollWidth <= d.clientWidth")
        browser.find_element(By.ID, "details-close").click()
    finally:
        studio.stop()


def test_a_new_recipe_says_save_first(browser, work):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    studio = Studio(work / "data", None, work)  # a bundled recipe to start from
    try:
        open_page(browser, studio)
        note = browser.find_element(By.ID, "run-note")
        assert note.is_displayed() and "Save the recipe first" in note.text
        browser.find_element(By.ID, "save-path").send_keys("fresh.yaml", Keys.ENTER)
        until(browser, lambda: browser.find_element(By.ID, "save-status").text.startswith("saved"), "not saved")
        assert not note.is_displayed()
        assert "--recipe fresh.yaml" in browser.find_element(By.ID, "command").text
        assert (work / "fresh.yaml").read_text() == yaml_text(browser)
    finally:
        studio.stop()
