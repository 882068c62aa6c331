// The search page: search by image (optionally a drawn region), more like this, index
// images, browse and delete. Talks to the same origin's API with fetch; ids and metadata are
// shown with textContent only (never parsed as HTML), and the page's Content-Security-Policy
// allows no inline script. With API keys configured the key is kept in sessionStorage, so it
// lives as long as this tab.
"use strict";

const KEY_STORAGE = "simsearch.apiKey";
const PAGE_SIZE = 12;
const MIN_BOX_PX = 4;
const INDEX_BATCH = 8;

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  queryFile: null,
  box: null, // [x1, y1, x2, y2] in pixels of the (EXIF-oriented) image, or null
  cursors: [null], // cursor of each browsed page; cursors[i] fetches page i
  page: 0,
  thumbUrls: { results: [], browse: [] }, // blob: URLs to revoke when a grid is redrawn
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

// ------------------------------------------------------------------ HTTP
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("X-API-Key", state.key);
  const resp = await fetch(path, { ...options, headers });
  if (resp.status === 401) {
    showKeyPanel(state.key ? "That API key was not accepted; enter another."
                           : "This server needs an API key. It is kept for this tab only.");
  }
  return resp;
}

async function apiJson(path, options = {}) {
  const resp = await api(path, options);
  let body = null;
  try {
    body = await resp.json();
  } catch (err) {
    body = null;
  }
  if (!resp.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : resp.statusText;
    throw new ApiError(resp.status, detail);
  }
  return body;
}

function itemPath(id) {
  return "/items/" + encodeURIComponent(id);
}

// ------------------------------------------------------------------ status lines
function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function setStatus(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function describeError(err) {
  if (err instanceof ApiError && err.status === 403) {
    return `${err.message} (a key with the 'write' scope is needed to change the index)`;
  }
  return err instanceof Error ? err.message : String(err);
}

// ------------------------------------------------------------------ API key
function showKeyPanel(message) {
  $("key-message").textContent = message;
  $("key-panel").hidden = false;
}

function saveKey() {
  const key = $("key-input").value.trim();
  if (!key) return;
  state.key = key;
  sessionStorage.setItem(KEY_STORAGE, key);
  $("key-input").value = "";
  $("key-panel").hidden = true;
  loadServerInfo();
}

function forgetKey() {
  state.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  showKeyPanel("Key forgotten. Enter a key to continue.");
}

async function loadServerInfo() {
  try {
    const health = await apiJson("/health");
    const parts = [health.status];
    if (health.model) parts.push(`model ${health.model.name} ${health.model.version}`);
    if (health.index) parts.push(`${health.index.ntotal} items (${health.index.type})`);
    $("server-info").textContent = parts.join(" · ");
  } catch (err) {
    $("server-info").textContent = describeError(err);
  }
}

// ------------------------------------------------------------------ query image and box
function setQueryFile(file) {
  if (!file) return;
  state.queryFile = file;
  state.box = null;
  const img = $("preview-img");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  $("preview").hidden = false;
  drawBox();
  $("search-btn").disabled = false;
}

function imageScale() {
  const img = $("preview-img");
  return img.clientWidth ? img.naturalWidth / img.clientWidth : 1;
}

function framePoint(event) {
  const rect = $("preview-img").getBoundingClientRect();
  const x = Math.min(Math.max(event.clientX - rect.left, 0), rect.width);
  const y = Math.min(Math.max(event.clientY - rect.top, 0), rect.height);
  return [x, y];
}

function drawBox(displayBox) {
  const box = $("box");
  const text = $("box-text");
  const shown = displayBox || (state.box && state.box.map((v) => v / imageScale()));
  if (!shown) {
    box.hidden = true;
    text.textContent = "";
    return;
  }
  const [x1, y1, x2, y2] = shown;
  box.hidden = false;
  box.style.left = `${x1}px`;
  box.style.top = `${y1}px`;
  box.style.width = `${x2 - x1}px`;
  box.style.height = `${y2 - y1}px`;
  text.textContent = state.box ? `Region: ${state.box.join(",")}` : "";
}

function setupBoxDrawing() {
  const frame = $("preview-frame");
  let start = null;
  let current = null;
  frame.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    frame.setPointerCapture(event.pointerId);
    start = framePoint(event);
    current = [...start, ...start];
  });
  frame.addEventListener("pointermove", (event) => {
    if (!start) return;
    const [x, y] = framePoint(event);
    current = [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)];
    drawBox(current);
  });
  frame.addEventListener("pointerup", () => {
    if (!start) return;
    start = null;
    const [x1, y1, x2, y2] = current;
    if (x2 - x1 < MIN_BOX_PX || y2 - y1 < MIN_BOX_PX) {
      state.box = null;
    } else {
      const s = imageScale();
      const img = $("preview-img");
      state.box = [
        Math.floor(x1 * s), Math.floor(y1 * s),
        Math.min(Math.ceil(x2 * s), img.naturalWidth), Math.min(Math.ceil(y2 * s), img.naturalHeight),
      ];
    }
    drawBox();
  });
  $("box-clear").addEventListener("click", () => {
    state.box = null;
    drawBox();
  });
}

function setupDropZone() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) setQueryFile(file);
  });
  $("query-file").addEventListener("change", (event) => setQueryFile(event.target.files[0]));
}

// ------------------------------------------------------------------ search options
function parseFilter() {
  const text = $("filter").value.trim();
  if (!text) return null;
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`filter is not valid JSON: ${err.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error('filter must be a JSON object, e.g. {"album": "trip"}');
  }
  return value;
}

function searchOptions() {
  const options = { top_k: Number($("top-k").value) || 10, rerank: $("rerank").value };
  const threshold = $("threshold").value.trim();
  if (threshold !== "") options.score_threshold = Number(threshold);
  const filter = parseFilter();
  if (filter) options.filter = filter;
  return options;
}

// ------------------------------------------------------------------ cards
function revokeThumbs(grid) {
  for (const url of state.thumbUrls[grid]) URL.revokeObjectURL(url);
  state.thumbUrls[grid] = [];
}

async function loadThumb(holder, id, grid) {
  try {
    const resp = await api(`${itemPath(id)}/thumbnail`);
    if (!resp.ok) {
      holder.textContent = resp.status === 404 ? "no thumbnail" : `thumbnail: ${resp.status}`;
      return;
    }
    const url = URL.createObjectURL(await resp.blob());
    state.thumbUrls[grid].push(url);
    const img = document.createElement("img");
    img.alt = `thumbnail of ${id}`;
    img.src = url;
    holder.replaceChildren(img);
  } catch (err) {
    holder.textContent = "thumbnail unavailable";
  }
}

function makeCard({ id, score, metadata }, grid) {
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.testid = "card";
  card.dataset.id = id;
  const thumb = document.createElement("div");
  thumb.className = "thumb";
  thumb.textContent = "…";
  thumb.title = "more like this";
  thumb.addEventListener("click", () => searchById(id));
  card.append(thumb);
  const body = document.createElement("div");
  body.className = "body";
  if (score !== undefined) {
    const scoreEl = document.createElement("div");
    scoreEl.className = "score";
    scoreEl.textContent = score.toFixed(3);
    body.append(scoreEl);
  }
  const idEl = document.createElement("div");
  idEl.className = "id";
  idEl.textContent = id;
  body.append(idEl);
  if (metadata && Object.keys(metadata).length) {
    const meta = document.createElement("pre");
    meta.className = "meta";
    meta.textContent = Object.entries(metadata)
      .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join("\n");
    body.append(meta);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  const more = document.createElement("button");
  more.type = "button";
  more.textContent = "More like this";
  more.dataset.testid = "more-like-this";
  more.addEventListener("click", () => searchById(id));
  actions.append(more);
  if (grid === "browse") {
    const del = document.createElement("button");
    del.type = "button";
    del.className = "danger";
    del.textContent = "Delete";
    del.dataset.testid = "delete";
    del.addEventListener("click", () => deleteItem(id));
    actions.append(del);
  }
  body.append(actions);
  card.append(body);
  loadThumb(thumb, id, grid);
  return card;
}

function showResults(title, results) {
  revokeThumbs("results");
  $("results-title").textContent = title;
  const grid = $("results");
  grid.replaceChildren(...results.map((hit) => makeCard(hit, "results")));
}

// ------------------------------------------------------------------ actions
async function searchByImage() {
  if (!state.queryFile) return;
  let options;
  try {
    options = searchOptions();
  } catch (err) {
    setStatus("search-status", err.message, true);
    return;
  }
  const form = new FormData();
  form.append("file", state.queryFile, state.queryFile.name);
  form.append("top_k", String(options.top_k));
  form.append("rerank", options.rerank);
  if (options.score_threshold !== undefined) form.append("score_threshold", String(options.score_threshold));
  if (options.filter) form.append("filter", JSON.stringify(options.filter));
  if (state.box) form.append("bbox", state.box.join(","));
  setStatus("search-status", "searching…");
  try {
    const body = await apiJson("/search", { method: "POST", body: form });
    const where = state.box ? ` (region ${state.box.join(",")})` : "";
    const ms = Math.round(body.timings_ms.total || 0);
    setStatus("search-status", `${plural(body.results.length, "result")} in ${ms} ms${where}`);
    showResults(`Results for ${state.queryFile.name}`, body.results);
  } catch (err) {
    setStatus("search-status", describeError(err), true);
  }
}

async function searchById(id) {
  let options;
  try {
    options = searchOptions();
  } catch (err) {
    setStatus("search-status", err.message, true);
    return;
  }
  setStatus("search-status", "searching…");
  try {
    const body = await apiJson("/search/by-id", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id, ...options }),
    });
    setStatus("search-status", `${plural(body.results.length, "result")} like ${id}`);
    showResults(`More like ${id}`, body.results);
    $("results-panel").scrollIntoView({ block: "start" });
  } catch (err) {
    setStatus("search-status", describeError(err), true);
  }
}

async function indexFiles() {
  const files = [...$("index-files").files];
  if (!files.length) {
    setStatus("index-status", "choose one or more images first", true);
    return;
  }
  const metaText = $("index-meta").value.trim();
  let meta = null;
  if (metaText) {
    try {
      meta = JSON.parse(metaText);
    } catch (err) {
      setStatus("index-status", `metadata is not valid JSON: ${err.message}`, true);
      return;
    }
  }
  // Several requests of INDEX_BATCH files each: the server caps files per request.
  let indexed = 0;
  let replaced = 0;
  try {
    for (let start = 0; start < files.length; start += INDEX_BATCH) {
      const batch = files.slice(start, start + INDEX_BATCH);
      setStatus("index-status", `indexing ${start + 1}–${start + batch.length} of ${files.length}…`);
      const form = new FormData();
      for (const file of batch) form.append("files", file, file.name);
      if ($("ids-from-names").checked) form.append("ids", JSON.stringify(batch.map((f) => f.name)));
      if (meta) form.append("metadata", JSON.stringify(batch.map(() => meta)));
      const body = await apiJson("/index", { method: "POST", body: form });
      indexed += body.count;
      replaced += body.replaced.length;
    }
    setStatus("index-status", `indexed ${indexed}${replaced ? `, ${replaced} replaced` : ""}`);
  } catch (err) {
    const done = indexed ? ` (${indexed} indexed before the error)` : "";
    setStatus("index-status", `${describeError(err)}${done}`, true);
  }
  loadServerInfo();
  browse(0);
}

async function browse(page) {
  if (page === 0) state.cursors = [null];
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const cursor = state.cursors[page];
  if (cursor) params.set("cursor", cursor);
  const prefix = $("prefix").value;
  if (prefix) params.set("id_prefix", prefix);
  try {
    const body = await apiJson(`/items?${params}`);
    state.page = page;
    state.cursors[page + 1] = body.next_cursor;
    revokeThumbs("browse");
    $("browse").replaceChildren(...body.items.map((item) => makeCard(item, "browse")));
    const first = page * PAGE_SIZE + (body.items.length ? 1 : 0);
    const last = page * PAGE_SIZE + body.items.length;
    $("page-info").textContent = `items ${first}–${last} of ${body.total}`;
    $("prev-btn").disabled = page === 0;
    $("next-btn").disabled = !body.next_cursor;
    setStatus("browse-status", "");
  } catch (err) {
    setStatus("browse-status", describeError(err), true);
  }
}

async function deleteItem(id) {
  try {
    await apiJson(itemPath(id), { method: "DELETE" });
    setStatus("browse-status", `deleted ${id}`);
    for (const card of document.querySelectorAll(".card")) {
      if (card.dataset.id === id) card.remove();
    }
    loadServerInfo();
    browse(state.page);
  } catch (err) {
    setStatus("browse-status", describeError(err), true);
  }
}

// ------------------------------------------------------------------ wiring
function init() {
  setupDropZone();
  setupBoxDrawing();
  $("search-btn").addEventListener("click", searchByImage);
  $("index-btn").addEventListener("click", indexFiles);
  $("browse-btn").addEventListener("click", () => browse(0));
  $("prev-btn").addEventListener("click", () => browse(Math.max(0, state.page - 1)));
  $("next-btn").addEventListener("click", () => browse(state.page + 1));
  $("key-save").addEventListener("click", saveKey);
  $("key-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") saveKey();
  });
  $("key-forget").addEventListener("click", forgetKey);
  loadServerInfo().then(() => browse(0));
}

document.addEventListener("DOMContentLoaded", init);
