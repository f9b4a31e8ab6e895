// augpipe studio: the page. Plain script, no framework; talks to the server's JSON API (see
// docs: the studio's HTTP API). One render at a time: a newer change aborts the older fetch.
"use strict";

(() => {
  const TOKEN = document.querySelector('meta[name="augpipe-token"]').content;
  const $ = (id) => document.getElementById(id);
  const ta = $("yaml");
  const LINE_HEIGHT = 20; // px, as --lh in studio.css
  const EDITOR_PAD = 8; // px, the textarea's top padding

  const S = {
    state: null,
    entries: new Map(), // transform name -> catalogue entry
    items: [], // the recipe's transforms, scanned from its text (a tree)
    selected: null, // path of the selected transform
    files: [], // files picked by hand
    renderMsgs: [], // from the render's error or start events
    checkMsgs: [], // from the check event
    job: null, // the render in flight or last started
    good: null, // the last complete, valid render
    edits: Promise.resolve(), // edits one after the other, each on the text the last one left
  };

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }

  async function request(path, body, signal) {
    const init = { signal, credentials: "same-origin" };
    if (body !== undefined) {
      init.method = "POST";
      init.headers = { "Content-Type": "application/json", "X-Augpipe-Token": TOKEN };
      init.body = JSON.stringify(body);
    }
    return fetch(path, init);
  }

  async function api(path, body) {
    const res = await request(path, body);
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (!res.ok && !(data && data.error)) throw new Error(`${path}: HTTP ${res.status}`);
    return data;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function status(node, text, bad = false) {
    node.textContent = text;
    node.classList.toggle("bad", bad);
  }

  function int(input, lo, hi, fallback) {
    const n = Math.round(Number(input.value));
    if (input.value === "" || !Number.isFinite(n)) return fallback;
    return Math.min(hi, Math.max(lo, n));
  }

  function fmt(value) {
    if (typeof value === "number" && !Number.isInteger(value)) return String(Math.round(value * 1000) / 1000);
    if (Array.isArray(value)) return `[${value.map(fmt).join(", ")}]`;
    if (value && typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${k}: ${fmt(v)}`).join(", ")}}`;
    return String(value);
  }

  function paramsText(params) {
    return Object.entries(params || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(", ");
  }

  // For the hover text: what a reader sets, not albumentations' bookkeeping (the image's
  // shape, the matrices it derived); the details panel shows everything.
  const brief = (params) => Object.fromEntries(Object.entries(readable(params)).filter(([k, v]) =>
    k !== "shape" && !(Array.isArray(v) && v.length && Array.isArray(v[0]))));

  // a multi-image step's donors by their paths (the details panel lists them in full)
  const readable = (params) => Object.fromEntries(Object.entries(params || {}).map(([k, v]) =>
    [k, k === "donors" && Array.isArray(v) ? v.map((d) => (d && d.source) || fmt(d)).join(", ") : v]));

  function lineage(applied, all = false) {
    if (!applied || !applied.length) return "no transform fired";
    return applied.map(([name, params]) => {
      const shown = all ? readable(params) : brief(params);
      return `${name}${Object.keys(shown).length ? " " + paramsText(shown) : ""}`;
    }).join("\n");
  }

  const samePath = (a, b) => !!a && !!b && a.length === b.length && a.every((v, i) => v === b[i]);

  // ------------------------------------------------------------------ the recipe's transforms, from its text

  // A small reader of the recipe's `transforms:` list, enough to know which transform a line
  // belongs to and what its parameters say (as YAML text); the server does the real parsing.
  function indentOf(line) {
    return line.length - line.trimStart().length;
  }

  function blank(line) {
    const t = line.trim();
    return t === "" || t.startsWith("#");
  }

  function splitTop(text) {
    const parts = [];
    let depth = 0, quote = null, cur = "";
    for (const ch of text) {
      if (quote) {
        if (ch === quote) quote = null;
      } else if (ch === '"' || ch === "'") quote = ch;
      else if ("[{".includes(ch)) depth++;
      else if ("]}".includes(ch)) depth--;
      else if (ch === "," && depth === 0) {
        parts.push(cur);
        cur = "";
        continue;
      }
      cur += ch;
    }
    if (cur.trim()) parts.push(cur);
    return parts;
  }

  function flowMapping(text) {
    const inner = text.trim().replace(/^\{/, "").replace(/\}\s*(#.*)?$/, "");
    const params = {};
    for (const part of splitTop(inner)) {
      const m = part.match(/^\s*([^:\s]+)\s*:\s*(.*?)\s*$/);
      if (m) params[m[1]] = m[2];
    }
    return params;
  }

  function scanList(lines, start, parentIndent, prefix) {
    const items = [];
    let i = start, indent = null;
    while (i < lines.length) {
      const line = lines[i];
      if (blank(line)) { i++; continue; }
      const d = indentOf(line);
      if (indent === null) {
        if (d < parentIndent || !line.trimStart().startsWith("-")) break;
        indent = d;
      }
      if (d < indent || (d === indent && !line.trimStart().startsWith("-"))) break;
      if (d > indent) { i++; continue; }
      const content = line.trimStart().slice(1).trim();
      const m = content.match(/^([A-Za-z_][\w.]*)\s*(?::\s*(.*))?$/);
      const item = { name: m ? m[1] : content, path: [...prefix, items.length], params: {}, start: i, end: i, children: null };
      const rest = m && m[2] !== undefined ? m[2].replace(/\s+#.*$/, "") : "";
      let j = i + 1;
      if (rest.startsWith("{")) {
        let text = rest;
        while (j < lines.length && (text.match(/[{[]/g) || []).length > (text.match(/[}\]]/g) || []).length) text += " " + lines[j++].trim();
        item.params = flowMapping(text);
      }
      // the item's own lines: deeper than its dash
      while (j < lines.length && (blank(lines[j]) || indentOf(lines[j]) > indent)) j++;
      let last = j - 1;
      while (last > i && blank(lines[last])) last--;
      item.end = last;
      if (!rest) readBlock(lines, i + 1, last, item);
      items.push(item);
      i = j;
    }
    return items;
  }

  function readBlock(lines, from, to, item) {
    let keyIndent = null;
    for (let k = from; k <= to; k++) {
      if (blank(lines[k])) continue;
      const d = indentOf(lines[k]);
      if (keyIndent === null) keyIndent = d;
      if (d !== keyIndent) continue;
      const m = lines[k].trim().match(/^([^:\s]+)\s*:\s*(.*?)\s*$/);
      if (!m) continue;
      const value = m[2].replace(/\s+#.*$/, "");
      if (m[1] === "transforms" && !value) {
        item.children = scanList(lines, k + 1, keyIndent, item.path);
      } else {
        let text = value;
        let n = k + 1;
        while (!value && n <= to && (blank(lines[n]) || indentOf(lines[n]) > keyIndent)) text += (text ? " " : "") + lines[n++].trim();
        item.params[m[1]] = text;
      }
    }
  }

  function scanRecipe(text) {
    const lines = text.split("\n");
    const at = lines.findIndex((l) => /^transforms\s*:\s*(#.*)?$/.test(l));
    return at < 0 ? [] : scanList(lines, at + 1, 0, []);
  }

  function* walk(items) {
    for (const item of items) {
      yield item;
      if (item.children) yield* walk(item.children);
    }
  }

  const itemAt = (path) => [...walk(S.items)].find((item) => samePath(item.path, path)) || null;

  function itemOfLine(index) {
    let found = null;
    for (const item of walk(S.items)) if (item.start <= index && index <= item.end) found = item;
    return found;
  }

  // ------------------------------------------------------------------ editor: gutter, marks, inline messages

  function messages() {
    const seen = new Set();
    return [...S.renderMsgs, ...S.checkMsgs].filter((m) => {
      const key = `${m.level}|${m.line}|${m.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }

  // The editor wraps long lines: each line's top, height and where its text ends, measured in a
  // hidden copy of the textarea's text (same font and width), for the gutter and the messages.
  function measureLines() {
    const box = $("measure");
    box.style.width = `${ta.clientWidth}px`;
    box.replaceChildren(...ta.value.split("\n").map((line) => el("div", {}, line || " ", el("span"))));
    S.lines = [...box.children].map((d) => ({ top: d.offsetTop, height: d.offsetHeight, endLeft: d.lastChild.offsetLeft, endTop: Math.floor((d.lastChild.offsetTop - d.offsetTop) / LINE_HEIGHT) * LINE_HEIGHT }));
    return S.lines;
  }

  function drawGutter() {
    const lines = measureLines();
    const marks = new Map();
    const said = new Map();
    for (const m of messages()) {
      if (m.line && (marks.get(m.line) !== "error")) marks.set(m.line, m.level);
      if (m.line) said.set(m.line, [...(said.get(m.line) || []), m.message]);
    }
    const gutter = $("gutter");
    gutter.replaceChildren(...lines.map((line, i) => el("div", { class: marks.get(i + 1) || null, style: `height: ${line.height}px`, title: (said.get(i + 1) || []).join("\n") || null, text: String(i + 1) })));
    gutter.append(el("div", { style: "height: 40px" }));
    gutter.scrollTop = ta.scrollTop;
  }

  function drawMessages() {
    const all = messages();
    $("messages").replaceChildren(...all.map((m) => el("li", { class: m.level },
      el("button", { type: "button", onclick: () => goToLine(m.line) },
        m.line ? `line ${m.line}: ${m.message}` : m.message))));
    const byLine = new Map();
    for (const m of all) {
      if (!m.line) continue;
      if (!byLine.has(m.line)) byLine.set(m.line, []);
      byLine.get(m.line).push(m);
    }
    const inline = $("inline");
    // one band on the line itself, after its text: the lines below stay readable
    inline.replaceChildren(...[...byLine].map(([line, ms]) => el("div", {
      class: ms.some((m) => m.level === "error") ? "error" : "warning",
      "data-line": String(line),
      title: ms.map((m) => m.message).join("\n"),
      onclick: () => goToLine(line),
    }, ms.map((m) => m.message.replace(/^\S+\.ya?ml: /, "")).join(" · "))));  // the band without the file's name
    drawGutter();
    placeInline();
  }

  // px: no band narrower than this; without the room, a "!" in the textarea's right padding
  // (kept free of text for it), the message on hover and in the list
  const BAND_MIN = 140, MARK = 20;

  function placeInline() {
    const lines = S.lines || measureLines();
    for (const box of $("inline").children) {
      const line = lines[Number(box.dataset.line) - 1];
      box.hidden = !line;
      if (!line) continue;
      const compact = line.endLeft + 16 > ta.clientWidth - BAND_MIN;
      box.classList.toggle("compact", compact);
      box.style.top = `${line.top + line.endTop - ta.scrollTop}px`;
      box.style.left = `${compact ? ta.clientWidth - MARK - 2 : line.endLeft + 16}px`;
    }
  }

  function goToLine(line) {
    if (!line) return;
    const lines = ta.value.split("\n");
    const at = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    ta.focus();
    ta.setSelectionRange(at, at + (lines[line - 1] || "").length);
    const at2 = (S.lines || measureLines())[line - 1];
    ta.scrollTop = Math.max(0, (at2 ? at2.top - EDITOR_PAD : (line - 1) * LINE_HEIGHT) - 2 * LINE_HEIGHT);
  }

  const caretLine = () => ta.value.slice(0, ta.selectionStart).split("\n").length - 1;

  // ------------------------------------------------------------------ the recipe's transforms and the selected one's form

  // The editor's text replaced by an edit's result, where the user was looking.
  // As typed text (insertText), so that Ctrl+Z in the editor undoes an edit made by the form or
  // the palette; the focus goes back where it was.
  function setText(text) {
    const active = document.activeElement, top = ta.scrollTop;
    S.setting = true;
    try {
      ta.focus({ preventScroll: true });
      ta.select();
      if (!document.execCommand("insertText", false, text) || ta.value !== text) ta.value = text;
    } finally {
      S.setting = false;
    }
    ta.setSelectionRange(0, 0);
    ta.scrollTop = top;
    if (active && active !== ta && active.isConnected) active.focus({ preventScroll: true });
  }

  // keepForm: the change came from the form, which shows it already (and keeps its focus)
  function textChanged(selectAfter, keepForm = false) {
    S.items = scanRecipe(ta.value);
    if (selectAfter !== undefined) S.selected = selectAfter;
    if (S.selected && !itemAt(S.selected)) S.selected = null;
    drawChosen();
    if (!keepForm || !S.selected) drawSelected();
    drawGutter();
    render();
  }

  function drawChosen() {
    const list = (items) => items.map((item) => el("li", {},
      el("button", {
        type: "button",
        "aria-current": samePath(item.path, S.selected) ? "true" : null,
        onclick: () => select(item.path),
      }, item.name),
      item.children ? el("ol", { class: "nested" }, list(item.children)) : null));
    const items = list(S.items);
    $("chosen").replaceChildren(...(items.length ? items : [el("li", { class: "empty muted", text: "No transforms yet: add one from the palette." })]));
  }

  function select(path) {
    if (samePath(path, S.selected)) return;
    S.selected = path;
    drawChosen();
    drawSelected();
  }

  function drawSelected() {
    const item = S.selected && itemAt(S.selected);
    $("selected").hidden = !item;
    if (!item) return;
    const entry = S.entries.get(item.name);
    $("selected-name").textContent = item.name;
    $("selected-doc").textContent = entry ? entry.doc : "Not in the catalogue.";
    const siblings = item.path.length > 1 ? itemAt(item.path.slice(0, -1)).children : S.items;
    const index = item.path[item.path.length - 1];
    $("move-up").disabled = index === 0;
    $("move-down").disabled = index === siblings.length - 1;
    const form = $("params");
    form.dataset.path = item.path.join(".");
    form.replaceChildren(...(entry ? entry.params : []).filter((p) => !(p.name === "transforms" && item.children)).map((p) => field(item, p)));
    if (entry && !entry.params.length) form.append(el("p", { class: "muted", text: "No parameters." }));
  }

  function field(item, param) {
    const id = `param-${param.name}`;
    const docId = `${id}-doc`;
    const current = item.params[param.name];
    const dflt = param.default === null || param.default === undefined ? "" : fmt(param.default);
    const range = param.range && param.range.length === 2 ? param.range : null;
    const label = el("label", { for: id }, param.name, " ", el("span", { class: "type",
      text: param.type + (range ? ` in ${fmt(range)}` : "") + (param.required ? ", required" : "") }));
    const doc = el("small", { class: "doc", id: docId, text: param.doc || "" });
    const common = { id, name: param.name, "aria-describedby": docId };
    let input;
    if (param.choices && param.choices.length) {
      input = el("select", common, el("option", { value: "", text: dflt ? `default: ${dflt}` : "(unset)" }),
        param.choices.map((c, i) => el("option", { value: String(i), text: fmt(c) })));
      const at = current === undefined ? -1 : param.choices.findIndex((c) => fmt(c) === current.replace(/^["']|["']$/g, ""));
      input.value = at < 0 ? "" : String(at);
      input.addEventListener("change", () => edit(input.value === "" ? { op: "unset", param: param.name }
        : { op: "set", param: param.name, value: JSON.stringify(param.choices[Number(input.value)]) }));
    } else if (/^bool/.test(param.type)) {
      const on = current !== undefined ? /^(true|yes|on)$/i.test(current) : param.default === true;
      input = el("input", { ...common, type: "checkbox", checked: on });
      input.addEventListener("change", () => edit({ op: "set", param: param.name, value: input.checked ? "true" : "false" }));
      return el("div", { class: "param bool" }, input, label, doc);
    } else if (/^(int|float)( \| None|, optional)?$/.test(param.type) && (current === undefined || current === "" || Number.isFinite(Number(current)))) {
      // a number field only for a plain number: it would drop the brackets of "[3, 9]"
      input = el("input", {
        ...common, type: "number", step: param.type.startsWith("int") ? "1" : "any",
        min: range ? range[0] : null, max: range ? range[1] : null, placeholder: dflt,
      });
      input.value = current ?? "";
      input.addEventListener("change", () => edit(input.value === "" ? { op: "unset", param: param.name }
        : { op: "set", param: param.name, value: input.value }));
      // a list typed all the same becomes YAML text, not its digits run together (a bracket starts
      // it afresh: a number field hides where its caret is)
      input.addEventListener("keydown", (e) => {
        if (input.type !== "number" || e.key.length !== 1 || !"[(,".includes(e.key)) return;
        e.preventDefault();
        const before = e.key === "," ? input.value : "";
        input.type = "text";
        input.value = before + e.key;
      });
    } else {
      input = el("input", { ...common, type: "text", spellcheck: "false", placeholder: dflt });
      input.value = current ?? "";
      input.addEventListener("change", () => edit(input.value.trim() === "" ? { op: "unset", param: param.name }
        : { op: "set", param: param.name, value: input.value }));
    }
    return el("div", { class: "param" }, label, input, doc);
  }

  // One edit after the other, each on the text the one before left; `then` picks the selection.
  function edit(op, then = (path) => path) {
    const path = S.selected;
    S.edits = S.edits.then(async () => {
      const out = await api("/api/edit", { text: ta.value, path: path || [], ...op }).catch((e) => ({ error: e.message }));
      if (out.error) {
        status($("edit-status"), out.error, true);
        return;
      }
      status($("edit-status"), "");
      setText(out.text);
      textChanged(then(path), op.op === "set" || op.op === "unset");
    });
    return S.edits;
  }

  function addTransform(name) {
    const target = S.selected && itemAt(S.selected);
    const into = target && target.children ? target.path : null;
    const op = { op: "add", name };
    S.edits = S.edits.then(async () => {
      const out = await api("/api/edit", { text: ta.value, ...op, ...(into ? { path: into } : {}) }).catch((e) => ({ error: e.message }));
      if (out.error) {
        status($("edit-status"), out.error, true);
        $("selected").hidden = false;
        return;
      }
      status($("edit-status"), "");
      setText(out.text);
      const items = scanRecipe(out.text);
      const list = into ? (([...walk(items)].find((i) => samePath(i.path, into)) || {}).children || []) : items;
      const added = list[list.length - 1];
      textChanged(added ? added.path : S.selected);
      const first = $("params").querySelector("input, select, textarea");
      if (added && first) first.focus();
    });
  }

  // ------------------------------------------------------------------ the palette

  function drawPalette(catalogue) {
    const groups = catalogue.groups.map((group, g) => el("details", { open: g === 0 },
      el("summary", {}, group.name, " ", el("span", { class: "count", text: `(${group.transforms.length})` })),
      el("ul", {}, group.transforms.map((t) => el("li", { "data-name": t.name.toLowerCase(), "data-doc": (t.doc || "").toLowerCase() },
        el("button", { type: "button", title: t.doc || t.name, "aria-label": `Add ${t.name}`, "data-transform": t.name, onclick: () => addTransform(t.name) },
          t.name, el("span", { class: "doc", text: (t.doc || "").split("\n")[0] })))))));
    $("palette").replaceChildren(...groups);
  }

  function filterPalette() {
    const q = $("filter").value.trim().toLowerCase();
    let total = 0;
    for (const details of $("palette").children) {
      let shown = 0;
      for (const li of details.querySelectorAll("li")) {
        const hit = !q || li.dataset.name.includes(q) || li.dataset.doc.includes(q);
        li.hidden = !hit;
        shown += hit;
      }
      details.hidden = shown === 0;
      total += shown;
      details.querySelector(".count").textContent = `(${shown})`;
      if (q) details.open = true;
    }
    $("palette-none").hidden = total > 0;
  }

  // the first transform button on screen (not filtered out, not in a closed group)
  const firstShown = () => [...$("palette").querySelectorAll("li button")].find((b) => b.getClientRects().length > 0);

  // ------------------------------------------------------------------ rendering

  function renderRequest() {
    const mode = $("pick-mode").value;
    return {
      text: ta.value,
      seed: int($("seed"), 0, 2 ** 31 - 1, S.state.seed),
      copies: int($("copies"), 0, 8, S.state.copies),
      rows: int($("rows"), 1, 8, S.state.rows),
      draw: $("draw").checked,
      pick: { mode, seed: int($("pick-seed"), 0, 2 ** 31 - 1, S.state.pick_seed), class: $("pick-class").value, files: S.files },
    };
  }

  async function render() {
    if (!S.state) return;
    if (S.job) S.job.controller.abort();
    if ($("pick-mode").value === "files" && !S.files.length) {
      status($("grid-status"), "type the files to show (part of a path, then Enter)");
      S.job = null;
      return;
    }
    const job = { controller: new AbortController(), t0: performance.now(), draw: $("draw").checked, tiles: new Map(), waiting: new Set(), arrived: new Set() };
    S.job = job;
    $("grid").setAttribute("aria-busy", "true");
    try {
      const res = await request("/api/render", renderRequest(), job.controller.signal);
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new Error(body.error || body.message || `HTTP ${res.status}`);
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) handle(job, JSON.parse(line));
        }
      }
      if (buffer.trim()) handle(job, JSON.parse(buffer));
    } catch (e) {
      if (e.name !== "AbortError" && job === S.job) status($("grid-status"), `render failed: ${e.message}`, true);
    } finally {
      if (job === S.job) $("grid").removeAttribute("aria-busy");
    }
  }

  // the server refuses the pick, not the recipe: said by the picker, the chip it names removed
  const PICK_ERROR = /: not a training image of |^no training images of class /;

  function pickRefused(message) {
    const bad = (message.match(/^(.*): not a training image of /) || [])[1];
    if (bad !== undefined && S.files.includes(bad)) {
      S.files = S.files.filter((f) => f !== bad);
      status($("pick-status"), `${message} (removed)`, true);
      drawFiles();
      render();
    } else {
      status($("pick-status"), message, true);
    }
  }

  const asMsgs = (list, level) => (list || []).map((m) => ({ line: m.line ?? null, message: m.message, level }));

  function handle(job, ev) {
    if (job !== S.job) return;
    switch (ev.type) {
      case "error":
        if (PICK_ERROR.test(ev.message)) {
          job.rejected = true;
          showGrid(S.good);
          pickRefused(ev.message);
          break;
        }
        S.renderMsgs = asMsgs([ev], "error");
        S.checkMsgs = [];
        drawMessages();
        job.rejected = true;
        showGrid(S.good);
        break;
      case "start":
        S.renderMsgs = asMsgs(ev.warnings, "warning");
        S.checkMsgs = [];
        drawMessages();
        startGrid(job, ev);
        break;
      case "tile":
        tile(job, ev);
        break;
      case "skipped":
        skipped(job, ev);
        break;
      case "check":
        S.checkMsgs = [...asMsgs(ev.warnings, "warning"), ...asMsgs(ev.error ? [ev.error] : [], "error")];
        drawMessages();
        if (ev.error) {
          job.rejected = true;
          showGrid(S.good);
        }
        break;
      case "done":
        job.done = true;
        job.serverMs = ev.ms;
        for (const key of job.waiting) {
          if (!job.arrived.has(key)) job.waiting.delete(key);
        }
        if (!job.rejected && !job.shown) showGrid(job);
        settle(job);
        break;
      default:
        break;
    }
  }

  function startGrid(job, ev) {
    job.render = ev.render;
    job.seed = ev.seed;
    job.rows = ev.rows;
    job.copies = ev.copies;
    showCommand(ev.command);
    unsaved(!!ev.unsaved);
    const notes = [...(ev.notes || [])];
    const asked = int($("copies"), 0, 8, S.state.copies);
    if (asked > ev.copies.length - 1) notes.push(`the recipe makes ${ev.copies.length - 1} copies of each image`);
    $("notes").replaceChildren(...notes.map((n) => el("li", { text: n })));
    const grid = el("div", { class: "grid", "data-render": String(ev.render) });
    grid.style.gridTemplateColumns = `minmax(72px, 160px) repeat(${ev.copies.length}, minmax(0, var(--tile)))`;
    grid.append(el("div", { class: "colhead" }), ...ev.copies.map((c) => el("div", { class: "colhead", text: c === 0 ? "original" : `copy ${c}` })));
    ev.rows.forEach((row, r) => {
      const head = el("div", { class: "rowhead", "data-row": String(r) },
        el("div", { text: row.source }), row.class != null ? el("span", { class: "cls", text: row.class }) : null);
      grid.append(head);
      if (row.skipped) {
        head.classList.add("skipped");
        grid.append(el("div", { class: "skiprow", style: `grid-column: span ${ev.copies.length}`, text: `skipped: ${row.skipped}` }));
        return;
      }
      for (const c of ev.copies) {
        const key = `${r}:${c}`;
        const img = el("img", { alt: `${row.source}, ${c === 0 ? "original" : `copy ${c}`}`, decoding: "async" });
        const fig = el("figure", { class: "tile waiting", tabindex: "0", "data-row": String(r), "data-copy": String(c), "data-source": row.source },
          img, el("figcaption", { text: "…" }));
        fig.addEventListener("click", () => openDetails(fig));
        fig.addEventListener("keydown", (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            openDetails(fig);
          }
        });
        job.tiles.set(key, fig);
        job.waiting.add(key);
        grid.append(fig);
      }
    });
    job.grid = grid;
  }

  function tile(job, ev) {
    const key = `${ev.row}:${ev.copy}`;
    const fig = job.tiles.get(key);
    if (!fig) return;
    job.arrived.add(key);
    fig.tile = ev;
    const caption = fig.querySelector("figcaption");
    if (ev.failed) {
      fig.classList.remove("waiting");
      fig.classList.add("failed");
      fig.querySelector("img").replaceWith(el("div", { class: "reason", text: ev.failed }));
      caption.textContent = "failed";
      fig.title = ev.failed;
      arrived(job, key);
      return;
    }
    const img = fig.querySelector("img");
    fig.dataset.src = ev.src || "";
    fig.dataset.raw = ev.raw || "";
    fig.title = lineage(ev.applied);
    caption.textContent = ev.caption || "";
    const loaded = () => {
      fig.classList.remove("waiting");
      arrived(job, key);
    };
    img.addEventListener("load", loaded, { once: true });
    img.addEventListener("error", () => {
      caption.textContent = `${ev.caption || ""} (the picture did not load)`;
      loaded();
    }, { once: true });
    img.src = job.draw ? ev.src : ev.raw || ev.src;
  }

  function arrived(job, key) {
    if (job !== S.job) return;
    if (job.firstMs === undefined) {
      job.firstMs = performance.now() - job.t0;
      if (!job.rejected) showGrid(job);
    }
    job.waiting.delete(key);
    settle(job);
  }

  function skipped(job, ev) {
    const head = job.grid && job.grid.querySelector(`.rowhead[data-row="${ev.row}"]`);
    if (!head) return;
    head.classList.add("skipped");
    head.append(el("div", { text: `skipped: ${ev.reason}` }));
    for (const c of job.copies) {
      const key = `${ev.row}:${c}`;
      const fig = job.tiles.get(key);
      if (fig && !job.arrived.has(key)) {
        fig.classList.remove("waiting");
        fig.classList.add("failed");
        fig.removeAttribute("tabindex");
        fig.querySelector("img").replaceWith(el("div", { class: "reason", text: `skipped: ${ev.reason}` }));
        fig.querySelector("figcaption").textContent = "skipped";
      }
      job.waiting.delete(key);
    }
    settle(job);
  }

  function settle(job) {
    if (!job.done || job.waiting.size || job.rejected || job.complete) return;
    job.complete = true;
    job.gridMs = performance.now() - job.t0;
    S.good = job;
    showGrid(job);
  }

  // The grid shown: its element, and what the page says about it.
  function showGrid(job) {
    const box = $("grid");
    for (const name of ["data-render", "data-first-ms", "data-grid-ms"]) box.removeAttribute(name);
    if (!job) {
      box.replaceChildren(el("p", { class: "empty", text: "No grid yet." }));
      status($("grid-status"), "");
      return;
    }
    job.shown = true;
    if (box.firstChild !== job.grid) box.replaceChildren(job.grid);
    const parts = [`seed ${job.seed}`];
    if (job.firstMs !== undefined) {
      box.setAttribute("data-first-ms", job.firstMs.toFixed(1));
      parts.push(`first tile ${Math.round(job.firstMs)} ms`);
    }
    if (job.complete) {
      box.setAttribute("data-grid-ms", job.gridMs.toFixed(1));
      box.setAttribute("data-render", String(job.render));
      parts.push(`grid ${Math.round(job.gridMs)} ms`);
    } else {
      parts.push("rendering…");
    }
    if (job !== S.job) parts.push("(the last good grid)");
    status($("grid-status"), parts.join(" · "));
  }

  // ------------------------------------------------------------------ a tile's details

  function openDetails(fig) {
    const t = fig.tile;
    if (!t || t.failed) return;
    const copy = t.copy === 0 ? "original" : `copy ${t.copy}`;
    $("details-title").textContent = `${t.source} · ${copy}`;
    const transforms = (t.applied || []).map(([name, params]) => el("li", {}, el("strong", { text: name }),
      Object.keys(params || {}).length ? el("ul", {}, Object.entries(params).map(([k, v]) => el("li", {},
        el("code", { text: k === "donors" ? "donors: see below" : `${k} = ${fmt(v)}` })))) : null));
    const donors = (t.donors || []).map((d) => el("div", { class: "donor" },
      d.src ? el("img", { src: d.src, alt: `donor ${d.source}` }) : null,
      el("div", {}, el("div", {}, el("strong", { text: d.step }), " from ", el("code", { text: d.source })),
        el("div", { class: "muted", text: (d.transforms || []).length ? lineage(d.transforms).split("\n").join("; ") : "no transforms of its own" }))));
    $("details-body").replaceChildren(el("div", { class: "details-grid" },
      el("img", { src: fig.querySelector("img").src, alt: `${t.source}, ${copy}` }),
      el("div", {},
        el("p", {}, `${t.width} × ${t.height} px`, t.ms !== undefined ? ` · made in ${Math.round(t.ms)} ms` : ""),
        t.caption ? el("p", { class: "muted", text: t.caption }) : null,
        el("h3", { text: "Transforms that fired" }),
        transforms.length ? el("ol", { class: "lineage" }, transforms) : el("p", { class: "muted", text: "None: the image as expand writes it." }),
        donors.length ? el("h3", { text: "Donors" }) : null, donors)));
    const dialog = $("details");
    dialog.returnTo = fig;
    dialog.showModal();
    $("details-close").focus();
  }

  // ------------------------------------------------------------------ picking sources

  function showPick() {
    const mode = $("pick-mode").value;
    for (const node of document.querySelectorAll("[data-pick]")) node.hidden = node.dataset.pick !== mode;
  }

  function drawFiles() {
    $("pick-files").replaceChildren(...S.files.map((f) => el("button", {
      type: "button", "aria-label": `Remove ${f}`, title: "Remove",
      onclick: () => {
        S.files = S.files.filter((x) => x !== f);
        drawFiles();
        render();
        $("pick-file").focus();
      },
    }, f, " ×")));
  }

  // The path as typed when it is a training image, else the first one whose path contains it.
  async function addFile(typed) {
    typed = typed.trim();
    if (!typed) return;
    const out = await api(`/api/files?q=${encodeURIComponent(typed)}`).catch(() => ({ files: [] }));
    const found = out.files || [];
    const path = found.includes(typed) ? typed : found[0];
    if (!path) {
      status($("pick-status"), `no training image's path contains "${typed}"`, true);
      return;
    }
    status($("pick-status"), "");
    $("pick-file").value = "";
    if (S.files.includes(path)) return;
    S.files = [...S.files, path];
    drawFiles();
    render();
  }

  const suggest = debounce(async () => {
    const q = $("pick-file").value.trim();
    const out = await api(`/api/files?q=${encodeURIComponent(q)}`).catch(() => ({ files: [] }));
    $("file-list").replaceChildren(...(out.files || []).map((f) => el("option", { value: f })));
  }, 150);

  // ------------------------------------------------------------------ save and the run panel

  // the command as the server words it; before a new recipe's first save it names no file yet
  function showCommand(command) {
    if (command !== undefined) $("command").textContent = command || "";
    $("run-note").hidden = !S.needsSave;
    $("run-note").textContent = S.needsSave ? "Save the recipe first (type a file name in Save to): the command runs the saved file." : "";
  }

  function unsaved(yes) {
    $("save").textContent = yes ? "Save*" : "Save";
    $("save").setAttribute("aria-label", yes ? "Save (unsaved changes)" : "Save");
  }

  async function save() {
    const path = $("save-path").value.trim();
    status($("save-status"), "saving…");
    const out = await api("/api/save", { text: ta.value, path: path || null }).catch((e) => ({ error: e.message }));
    if (out.error) {
      status($("save-status"), out.error, true);
      if (out.line) {
        S.checkMsgs = [...S.checkMsgs, { line: out.line, message: out.message || out.error, level: "error" }];
        drawMessages();
      }
      return;
    }
    unsaved(false);
    status($("save-status"), `saved ${out.saved}${out.backup ? ` (the previous version: ${out.backup})` : ""}`);
    S.needsSave = false;
    showCommand(out.command);
  }

  async function copyCommand() {
    const text = $("command").textContent;
    try {
      await navigator.clipboard.writeText(text);
      $("copy-command").textContent = "Copied";
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents($("command"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $("copy-command").textContent = "Selected: Ctrl+C";
    }
    setTimeout(() => { $("copy-command").textContent = "Copy"; }, 1500);
  }

  // ------------------------------------------------------------------ wiring

  function wire() {
    for (const form of document.querySelectorAll("form")) form.addEventListener("submit", (e) => e.preventDefault());
    const typed = debounce(() => textChanged(), 250);
    ta.addEventListener("input", () => {
      if (S.setting) return;
      drawGutter();
      typed();
    });
    ta.addEventListener("scroll", () => {
      $("gutter").scrollTop = ta.scrollTop;
      placeInline();
    });
    const follow = () => {
      const item = itemOfLine(caretLine());
      if (item) select(item.path);
    };
    ta.addEventListener("click", follow);
    ta.addEventListener("keyup", (e) => {
      if (e.key.startsWith("Arrow") || e.key === "PageUp" || e.key === "PageDown" || e.key === "Home" || e.key === "End") follow();
    });
    ta.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "s") {
        e.preventDefault();
        save();
      }
    });
    const later = debounce(() => {
      limits();
      render();
    }, 250);
    for (const id of ["seed", "copies", "rows", "pick-seed"]) $(id).addEventListener("input", later);
    $("pick-class").addEventListener("change", () => {
      status($("pick-status"), "");
      render();
    });
    $("draw").addEventListener("change", () => {
      showDrawn();
      render();
    });
    $("pick-mode").addEventListener("change", () => {
      status($("pick-status"), "");
      showPick();
      render();
    });
    $("reshuffle").addEventListener("click", () => {
      $("seed").value = String(Math.floor(Math.random() * 1e6));
      render();
    });
    $("other-images").addEventListener("click", () => {
      $("pick-seed").value = String(Math.floor(Math.random() * 1e6));
      render();
    });
    $("pick-file").addEventListener("input", (e) => {
      const value = $("pick-file").value;
      const listed = [...$("file-list").options].some((o) => o.value === value);
      if (listed && (!e.inputType || e.inputType === "insertReplacementText")) addFile(value);
      else suggest();
    });
    $("pick-file").addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        addFile($("pick-file").value);
      }
    });
    $("pick-file").addEventListener("focus", suggest);
    $("filter").addEventListener("input", filterPalette);
    $("filter").addEventListener("keydown", (e) => {
      const first = firstShown();
      if (!first || e.shiftKey || e.altKey || e.ctrlKey) return;
      if (e.key === "Enter") {
        e.preventDefault();
        first.click();
      } else if (e.key === "Tab") {
        e.preventDefault();
        first.focus();
      }
    });
    $("save").addEventListener("click", save);
    $("save-path").addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        save();
      }
    });
    new ResizeObserver(() => {
      drawGutter();
      placeInline();
    }).observe(ta);
    $("copy-command").addEventListener("click", copyCommand);
    $("remove").addEventListener("click", () => edit({ op: "remove" }, () => null));
    $("move-up").addEventListener("click", () => edit({ op: "move", by: -1 }, (p) => [...p.slice(0, -1), p[p.length - 1] - 1]));
    $("move-down").addEventListener("click", () => edit({ op: "move", by: 1 }, (p) => [...p.slice(0, -1), p[p.length - 1] + 1]));
    $("details-close").addEventListener("click", () => $("details").close());
    $("details").addEventListener("close", () => {
      const fig = $("details").returnTo;
      if (fig && fig.isConnected) fig.focus();
    });
  }

  // Draw targets on or off shows at once on the grid shown, whatever the next render says
  function showDrawn() {
    const draw = $("draw").checked;
    for (const fig of $("grid").querySelectorAll(".tile")) {
      const img = fig.querySelector("img");
      const url = draw ? fig.dataset.src : fig.dataset.raw || fig.dataset.src;
      if (img && url) img.src = url;
    }
  }

  // rows and copies typed past their limits: set to the limit, and said
  function limits() {
    const said = [];
    for (const [id, what] of [["copies", "copies"], ["rows", "rows"]]) {
      const input = $(id), lo = Number(input.min), hi = Number(input.max), n = Number(input.value);
      if (input.value === "" || !Number.isFinite(n) || (n >= lo && n <= hi)) continue;
      input.value = String(Math.min(hi, Math.max(lo, Math.round(n))));
      said.push(`${what}: ${lo} to ${hi}, set to ${input.value}`);
    }
    status($("limit-note"), said.join("; "), said.length > 0);
  }

  async function start() {
    wire();
    const [state, answer] = await Promise.all([api("/api/state"), api("/api/catalogue")]);
    // the contract's {"groups": [...]}; the server (12:50) sends {"groups": {"groups": [...]}}
    const catalogue = Array.isArray(answer.groups) ? answer : answer.groups;
    S.state = state;
    for (const group of catalogue.groups) for (const t of group.transforms) S.entries.set(t.name, t);
    document.documentElement.style.setProperty("--tile", `${state.tile || 320}px`);
    const recipe = state.recipe || {};
    $("where").textContent = [state.source, state.kind, `${state.files} training images`,
      state.skipped ? `${state.skipped} files skipped` : null,
      recipe.path ? `recipe ${recipe.path}${recipe.bundled ? " (bundled)" : ""}` : "new recipe"].filter(Boolean).join(" · ");
    $("save-path").placeholder = recipe.path && !recipe.bundled ? `empty: ${recipe.path}`
      : `${recipe.bundled ? "a bundled recipe: " : ""}a new .yaml file in ${state.cwd}`;
    $("seed").value = String(state.seed);
    $("copies").value = String(state.copies);
    $("rows").value = String(state.rows);
    $("pick-seed").value = String(state.pick_seed);
    $("pick-class").replaceChildren(...(state.classes || []).map((c) => el("option", { value: c, text: c })));
    $("pick-mode").querySelector('option[value="class"]').disabled = !(state.classes || []).length;
    ta.value = recipe.text || "";
    S.needsSave = !recipe.path || !!recipe.bundled;
    showCommand();
    drawPalette(catalogue);
    showPick();
    showGrid(null);
    textChanged();
  }

  start().catch((e) => {
    status($("grid-status"), `the studio did not start: ${e.message}`, true);
  });
})();
