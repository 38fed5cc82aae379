// The mmrag search page: no framework, no external asset (the server's CSP forbids them).
// It talks to the same JSON API as everyone else: GET /readyz, GET /search, POST /auth.
"use strict";

const $ = (sel) => document.querySelector(sel);
const form = $("#search-form"), qInput = $("#q"), modalitySel = $("#modality"), sourceInput = $("#source");
const statusEl = $("#status"), notice = $("#notice"), resultsEl = $("#results");
const authForm = $("#auth-form"), tokenInput = $("#token"), authError = $("#auth-error");
const viewer = $("#viewer"), viewerImg = $("#viewer-img"), viewerBoxes = $("#viewer-boxes");
const readyLine = $("#ready-line");

const MODALITY_LABEL = { page: "page", image: "image", segment: "recording" };
const STOPWORDS = new Set(("a an and are as at be by can do does for from how i in is it my of on or the this to " +
  "was what when where which who why will with you your").split(" "));
let lastResponse = null;
let pendingAfterAuth = false;

// ------------------------------------------------------------------ small helpers
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function clock(s) {
  const t = Math.max(0, Math.floor(s));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
}

function queryTerms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}][\p{L}\p{N}'_-]*/gu) || [];
  return [...new Set(words.filter((w) => w.length > 1 && !STOPWORDS.has(w)))];
}

function termPattern(terms) {
  if (!terms.length) return null;
  const esc = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).sort((a, b) => b.length - a.length);
  return new RegExp("(?<![\\p{L}\\p{N}])(" + esc.join("|") + ")", "giu");  // word starts: "reset" marks "resets"
}

// Text with the query's words wrapped in <mark>, built as DOM nodes (never innerHTML).
function highlighted(text, pattern) {
  const frag = document.createDocumentFragment();
  if (!pattern) { frag.append(text); return frag; }
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) frag.append(text.slice(last, m.index));
    frag.append(el("mark", { text: m[0] }));
    last = m.index + m[0].length;
  }
  frag.append(text.slice(last));
  return frag;
}

function detailText(body, fallback) {
  if (!body || body.detail === undefined) return fallback;
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((d) => (d.loc ? d.loc.filter((x) => x !== "body").join(".") + ": " : "") + d.msg).join("; ");
  return JSON.stringify(body.detail);
}

// ------------------------------------------------------------------ states
function clearNotice() { notice.hidden = true; notice.className = "notice"; notice.replaceChildren(); }

function showNotice(kind, title, ...lines) {
  notice.className = "notice " + kind;
  notice.setAttribute("role", kind === "error" ? "alert" : "status");
  notice.dataset.state = kind;
  notice.replaceChildren(el("h2", { text: title }), ...lines.map((l) => (typeof l === "string" ? el("p", { text: l }) : l)));
  notice.hidden = false;
}

function showError(message) {
  resultsEl.replaceChildren();
  statusEl.textContent = "";
  showNotice("error", "The search failed", message);
}

function showEmpty(resp, filters) {
  const tips = el("ul", {},
    el("li", { text: "Use other words, or fewer: the index matches meaning and words from pages, images and transcripts." }));
  if (filters.length) {
    tips.append(el("li", {}, "Filters are on (" + filters.join(", ") + "). ",
      el("button", { type: "button", class: "play", id: "clear-filters", onclick: () => { modalitySel.value = ""; sourceInput.value = ""; runSearch(); } }, "Search without filters")));
  }
  if (resp.dropped_below_threshold) tips.append(el("li", { text: resp.dropped_below_threshold + " weaker matches scored below the relevance threshold (search.thresholds)." }));
  showNotice("empty", "No results for “" + resp.query + "”", tips);
}

function showAuth() {
  resultsEl.replaceChildren();
  statusEl.textContent = "";
  clearNotice();
  authForm.hidden = false;
  pendingAfterAuth = true;
  tokenInput.focus();
}

// ------------------------------------------------------------------ readiness
async function readiness() {
  try {
    const r = await fetch("/readyz", { cache: "no-store" });
    const body = await r.json();
    if (body.status === "ready") {
      const ix = body.index || {};
      readyLine.textContent = "index " + (ix.table || "") + " v" + ix.version + ", " + ix.items + " items";
      return body;
    }
    readyLine.textContent = body.status === "loading" ? "loading the index…" : "index not loaded";
    return body;
  } catch (e) {
    readyLine.textContent = "server unreachable";
    return { status: "unreachable", error: String(e) };
  }
}

async function waitUntilReady() {
  for (;;) {
    const body = await readiness();
    if (body.status === "ready") { clearNotice(); return true; }
    if (body.status === "failed") {
      showNotice("error", "The search index is not available", body.error || "unknown error",
        "Build it with `mmrag index` (same overrides as `mmrag serve`); this page retries by itself.");
    } else if (body.status === "loading") {
      showNotice("loading", "Loading the index and the query encoder…", "Searches start as soon as it is ready.");
    } else {
      showNotice("error", "The server does not answer", body.error || "");
    }
    await new Promise((res) => setTimeout(res, body.status === "failed" ? 5000 : 1000));
  }
}

// ------------------------------------------------------------------ search
function currentParams() {
  const p = new URLSearchParams();
  p.set("q", qInput.value);
  if (modalitySel.value) p.append("modality", modalitySel.value);
  if (sourceInput.value.trim()) p.append("source", sourceInput.value.trim());
  return p;
}

async function runSearch({ push = true } = {}) {
  const params = currentParams();
  if (push) history.pushState(null, "", "/?" + params.toString());
  authForm.hidden = true;
  clearNotice();
  statusEl.textContent = "Searching…";
  resultsEl.setAttribute("aria-busy", "true");
  let r, body = null;
  try {
    r = await fetch("/search?" + params.toString(), { headers: { Accept: "application/json" }, credentials: "same-origin" });
    body = await r.json().catch(() => null);
  } catch (e) {
    resultsEl.removeAttribute("aria-busy");
    showError("The server did not answer (" + e.message + "). Is `mmrag serve` still running?");
    return;
  }
  resultsEl.removeAttribute("aria-busy");
  if (r.status === 401) { showAuth(); return; }
  if (r.status === 503) {
    statusEl.textContent = "";
    if (await waitUntilReady()) runSearch({ push: false });
    return;
  }
  if (!r.ok) { showError(detailText(body, "HTTP " + r.status)); return; }
  render(body);
}

function render(resp) {
  lastResponse = resp;
  resultsEl.replaceChildren();
  const filters = [];
  if (modalitySel.value) filters.push("kind: " + modalitySel.options[modalitySel.selectedIndex].text);
  if (sourceInput.value.trim()) filters.push("source: " + sourceInput.value.trim());
  const t = resp.timings_ms || {};
  const how = resp.first_stage + ("lexical_ms" in t ? " + BM25" : "") + " → " + resp.reranker;
  statusEl.textContent = resp.results.length + " result" + (resp.results.length === 1 ? "" : "s") + " in " +
    Math.round(t.total_ms || 0) + " ms (" + how + ")" + (filters.length ? " · " + filters.join(" · ") : "") +
    (resp.warnings.length ? " · " + resp.warnings.join("; ") : "");
  if (!resp.results.length) { showEmpty(resp, filters); return; }
  const pattern = termPattern(queryTerms(resp.query));
  resp.results.forEach((r) => resultsEl.append(resultItem(r, pattern, resp)));
}

function whereText(r) {
  if (r.start_s !== null && r.start_s !== undefined) return clock(r.start_s) + "–" + clock(r.end_s);
  if (r.modality === "page" && r.page) return "page " + r.page;
  return "";
}

function whyLine(r, resp) {
  const c = r.channels || {};
  const chips = [el("span", { class: "score", title: "final score: the channels' ranks fused (search.fusion)", text: "score " + r.score.toFixed(4) })];
  if (c.maxsim !== null && c.maxsim !== undefined) chips.push(el("span", { title: "exact late-interaction (MaxSim) score per query token; z: against this modality's background", text: "MaxSim " + c.maxsim.toFixed(3) + "/token" + (c.calibrated !== null && c.calibrated !== undefined ? " (z " + c.calibrated.toFixed(2) + ")" : "") }));
  if (c.dense) chips.push(el("span", { title: "rank in the dense sentence-embedding channel", text: c.dense.rank ? "dense #" + c.dense.rank : "dense: not listed" }));
  if (c.first_stage) chips.push(el("span", { title: "rank in the first-stage candidates", text: c.first_stage.name + (c.first_stage.rank ? " #" + c.first_stage.rank : ": not a candidate") }));
  if (c.lexical) chips.push(el("span", { title: "rank in the BM25 keyword channel", text: c.lexical.rank ? "BM25 #" + c.lexical.rank : "BM25: no keyword match" }));
  return el("p", { class: "why", "aria-label": "why it matched" }, el("span", { text: "why:" , class: "lead" }), ...chips);
}

function resultItem(r, pattern, resp) {
  const title = r.source + (whereText(r) ? " — " + whereText(r) : "");
  const art = el("article", { tabindex: "0", "data-item-id": r.item_id, "data-modality": r.modality, "aria-label": "Result " + r.rank + ": " + title });
  // left column: thumbnail (opens the full page) or a placeholder
  if (r.thumbnail_url) {
    const img = el("img", { src: r.thumbnail_url, alt: "thumbnail of " + title, loading: "lazy" });
    art.append(el("button", { type: "button", class: "thumb", title: "open the full page", tabindex: "-1", onclick: () => openViewer(r, art) }, img));
  } else {
    const sign = (r.media_type || "").startsWith("video/") ? "▶" : r.media_url ? "♪" : "¶";
    art.append(el("div", { class: "thumb placeholder", "aria-hidden": "true", text: sign }));
  }
  const body = el("div", { class: "body" });
  const heading = r.image_url
    ? el("button", { type: "button", class: "title", onclick: () => openViewer(r, art) }, r.source)
    : el("span", { class: "title" }, r.source);
  body.append(el("h2", {}, heading, whereText(r) ? el("span", { class: "where", text: whereText(r) }) : null,
    el("span", { class: "badge", text: MODALITY_LABEL[r.modality] || r.modality })));
  if (r.snippet) body.append(el("p", { class: "snippet" }, highlighted(r.snippet, pattern)));
  if (r.media_url) body.append(player(r));
  if (r.original_url) body.append(el("p", { class: "original" }, el("a", { href: r.original_url, download: "", text: "download the original file" })));
  body.append(whyLine(r, resp));
  art.append(body);
  art.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" || ev.target !== art) return;
    ev.preventDefault();
    if (r.image_url) openViewer(r, art);
    else if (r.media_url) playFrom(art.querySelector("audio, video"), r.start_s);
  });
  return el("li", { class: "result " + r.modality }, art);
}

function player(r) {
  const isVideo = (r.media_type || "").startsWith("video/");
  // "#t=" is a media fragment: the element starts there even with its own play button
  const media = el(isVideo ? "video" : "audio", { controls: true, preload: "metadata", src: r.media_url + "#t=" + r.start_s });
  const btn = el("button", { type: "button", class: "play", onclick: () => playFrom(media, r.start_s) }, "▶ Play from " + clock(r.start_s));
  return el("div", { class: "player" }, media, btn);
}

function playFrom(media, start) {
  if (!media) return;
  const go = () => { media.currentTime = start; media.play().catch(() => {}); };
  if (media.readyState >= 1) go();
  else media.addEventListener("loadedmetadata", go, { once: true });
  if (media.readyState < 1) media.load();
}

// ------------------------------------------------------------------ page viewer
let viewerReturn = null;

function openViewer(r, fromEl) {
  viewerReturn = fromEl;
  $("#viewer-title").textContent = r.source + (r.page ? " — page " + r.page : "");
  const link = $("#viewer-open");
  link.href = r.image_url;
  viewerImg.alt = "full page: " + r.source + (r.page ? ", page " + r.page : "");
  viewerBoxes.replaceChildren();
  const note = $("#viewer-note");
  note.textContent = "";
  viewerImg.onload = () => { if (r.boxes_url) loadBoxes(r, note); };
  viewerImg.src = r.image_url;
  viewer.showModal();
  $("#viewer-close").focus();
}

// OCR word boxes of the page (GET boxes_url): [{x0, y0, x1, y1, text}] in the pixel space of
// image_width x image_height; the ones matching the query are drawn as hits.
async function loadBoxes(r, note) {
  let data;
  try {
    const resp = await fetch(r.boxes_url, { credentials: "same-origin" });
    if (!resp.ok) return;
    data = await resp.json();
  } catch (e) { return; }
  if (viewerImg.getAttribute("src") !== r.image_url) return; // the viewer moved on to another page
  drawBoxes(data, note);
}

function drawBoxes(data, note) {
  const boxes = Array.isArray(data.boxes) ? data.boxes : [];
  if (!boxes.length) return;
  const w = data.image_width || viewerImg.naturalWidth, h = data.image_height || viewerImg.naturalHeight;
  viewerBoxes.setAttribute("viewBox", "0 0 " + w + " " + h);
  const pattern = termPattern(queryTerms(lastResponse ? lastResponse.query : ""));
  let hits = 0;
  const ns = "http://www.w3.org/2000/svg";
  for (const b of boxes) {
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", b.x0); rect.setAttribute("y", b.y0);
    rect.setAttribute("width", Math.max(1, b.x1 - b.x0)); rect.setAttribute("height", Math.max(1, b.y1 - b.y0));
    const hit = !!pattern && pattern.test(b.text || "");
    if (pattern) pattern.lastIndex = 0;
    if (hit) { rect.classList.add("hit"); hits++; }
    const t = document.createElementNS(ns, "title"); t.textContent = b.text || "";
    rect.append(t);
    viewerBoxes.append(rect);
  }
  note.textContent = boxes.length + " OCR text boxes, " + hits + " matching the query (highlighted).";
}

viewer.addEventListener("close", () => { viewerImg.removeAttribute("src"); if (viewerReturn) viewerReturn.focus(); });
$("#viewer-close").addEventListener("click", () => viewer.close());
viewer.addEventListener("click", (ev) => { if (ev.target === viewer) viewer.close(); });

// ------------------------------------------------------------------ keyboard
function articles() { return [...resultsEl.querySelectorAll("article")]; }

document.addEventListener("keydown", (ev) => {
  if (viewer.open) return;
  const typing = ev.target.matches && ev.target.matches("input, select, textarea");
  if (ev.key === "/" && !typing) { ev.preventDefault(); qInput.focus(); qInput.select(); return; }
  if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
  const list = articles();
  if (!list.length) return;
  const current = ev.target.closest ? ev.target.closest("article") : null;
  if (ev.target === qInput && ev.key === "ArrowDown") { ev.preventDefault(); list[0].focus(); return; }
  if (!current || (typing && ev.target !== qInput)) return;
  if (ev.target.matches("audio, video")) return;  // their own arrow keys seek
  ev.preventDefault();
  const i = list.indexOf(current) + (ev.key === "ArrowDown" ? 1 : -1);
  if (i < 0) qInput.focus();
  else if (i < list.length) list[i].focus();
});

form.addEventListener("submit", (ev) => { ev.preventDefault(); runSearch(); });

authForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  authError.textContent = "";
  const r = await fetch("/auth", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: tokenInput.value }), credentials: "same-origin" });
  if (r.status === 204) {
    tokenInput.value = "";
    authForm.hidden = true;
    if (pendingAfterAuth) { pendingAfterAuth = false; runSearch({ push: false }); }
    qInput.focus();
  } else {
    authError.textContent = r.status === 401 ? "Wrong token." : "HTTP " + r.status;
    tokenInput.select();
  }
});

function fromUrl() {
  const p = new URLSearchParams(location.search);
  qInput.value = p.get("q") || "";
  modalitySel.value = p.get("modality") || "";
  sourceInput.value = p.get("source") || "";
  return p.has("q");
}

window.addEventListener("popstate", () => { if (fromUrl()) runSearch({ push: false }); else { resultsEl.replaceChildren(); clearNotice(); statusEl.textContent = ""; } });

(async function start() {
  const hasQuery = fromUrl();
  const body = await readiness();
  if (body.status !== "ready") await waitUntilReady();
  if (hasQuery) runSearch({ push: false });
  else statusEl.textContent = "Search pages, images and recordings. Results show why they matched; pages open full size, recordings play from the moment that matched.";
  document.body.dataset.ready = "true";
})();
