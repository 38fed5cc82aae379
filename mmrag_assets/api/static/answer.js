// The answer panel of the search page (issue 25): POST /answer, read its server-sent events with
// fetch (EventSource cannot POST), show the LLM's words as they come, then the checked answer with
// its numbered citations linked to the exact page (thumbnail), image or moment of a recording.
"use strict";

(function () {
  const $a = (sel) => document.querySelector(sel);
  const panel = $a("#answer-panel"), textEl = $a("#answer-text"), srcEl = $a("#answer-sources");
  const metaEl = $a("#answer-meta"), askBtn = $a("#ask"), qBox = $a("#q");
  if (!panel || !askBtn) return;

  function node(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of kids) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const clockOf = (s) => { s = Math.max(0, Math.round(s || 0)); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); };
  function where(s) {
    if (s.start_s !== null && s.start_s !== undefined) return clockOf(s.start_s) + "–" + clockOf(s.end_s);
    return s.page ? "page " + s.page : "";
  }

  // the answer text with every [n] a link to its source card (only numbers the server checked)
  function withCitations(text, valid) {
    const out = node("p", { class: "answer-body" });
    const re = /\[(\d+)\]/g;
    let last = 0, m;
    while ((m = re.exec(text)) !== null) {
      out.append(text.slice(last, m.index));
      const n = m[1];
      out.append(valid.has(Number(n)) ? node("a", { href: "#source-" + n, class: "cite", text: "[" + n + "]" }) : "[" + n + "]");
      last = re.lastIndex;
    }
    out.append(text.slice(last));
    return out;
  }

  function sourceCard(s, cited, quote) {
    const card = node("li", { id: "source-" + s.n, class: "answer-source" + (cited ? " cited" : "") });
    const label = node("span", { class: "answer-n", text: "[" + s.n + "]" });
    if (s.thumbnail_url) {
      const img = node("img", { src: s.thumbnail_url, alt: s.source + " " + where(s), loading: "lazy" });
      card.append(s.image_url ? node("a", { href: s.image_url, target: "_blank", rel: "noopener" }, img) : img);
    }
    const head = node("div", { class: "answer-where" }, label, " ", node("strong", { text: s.source }), " ", where(s));
    card.append(head);
    if (quote) card.append(node("blockquote", { text: quote }));
    if (s.media_url && s.start_s !== null && s.start_s !== undefined) {
      const isVideo = (s.media_type || "").startsWith("video/");
      const media = node(isVideo ? "video" : "audio", { controls: "", preload: "none", src: s.media_url + "#t=" + s.start_s });
      const play = node("button", { type: "button", class: "play", text: "▶ Play from " + clockOf(s.start_s),
        onclick: () => { media.currentTime = s.start_s; media.play().catch(() => {}); } });
      card.append(node("div", { class: "player" }, media, play));
    }
    return card;
  }

  function parseEvents(buffer, handle) {
    let i;
    while ((i = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      handle(event, data ? JSON.parse(data) : null);
    }
    return buffer;
  }

  async function ask() {
    const question = qBox.value.trim();
    if (!question) { qBox.focus(); return; }
    const filters = {};
    const modality = $a("#modality").value, source = $a("#source").value.trim();
    if (modality) filters.modality = [modality];
    if (source) filters.source_prefix = [source];
    panel.hidden = false;
    panel.setAttribute("aria-busy", "true");
    textEl.replaceChildren(node("p", { class: "answer-body", text: "Thinking…" }));
    srcEl.replaceChildren();
    metaEl.textContent = "";
    let sources = [], streamed = "";
    let r;
    try {
      r = await fetch("/answer", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ question, filters: Object.keys(filters).length ? filters : null }) });
    } catch (e) {
      textEl.replaceChildren(node("p", { class: "answer-error", text: "The server did not answer (" + e.message + ")." }));
      panel.removeAttribute("aria-busy");
      return;
    }
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      const detail = body && typeof body.detail === "string" ? body.detail : "HTTP " + r.status;
      textEl.replaceChildren(node("p", { class: "answer-error", text: r.status === 401 ? "This server needs a token: search once to unlock it." : detail }));
      panel.removeAttribute("aria-busy");
      return;
    }
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    const handle = (event, data) => {
      if (event === "sources") {
        sources = data.sources;
        srcEl.replaceChildren(...sources.map((s) => sourceCard(s, false, null)));
      } else if (event === "delta") {
        streamed += data.text;
        textEl.replaceChildren(node("p", { class: "answer-body", text: streamed }));
      } else if (event === "answer") {
        const valid = new Set(data.citations.map((c) => c.n));
        textEl.replaceChildren(withCitations(data.answer, valid));
        const quotes = new Map(data.citations.map((c) => [c.n, c.quote]));
        srcEl.replaceChildren(...data.sources.map((s) => sourceCard(s, valid.has(s.n), quotes.get(s.n))));
        const t = data.timings_ms || {};
        metaEl.textContent = (data.abstained ? "Not found in the corpus · closest results below · " : "") + data.generator +
          " · confidence " + data.confidence.toFixed(2) + " · " + Math.round(t.total_ms || 0) + " ms" +
          (data.warnings.length ? " · " + data.warnings.join("; ") : "");
      } else if (event === "error") {
        textEl.replaceChildren(node("p", { class: "answer-error", text: data.detail }));
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), handle);
    }
    panel.removeAttribute("aria-busy");
  }

  askBtn.addEventListener("click", ask);
})();
