// The search page: search by image (optionally a drawn region), more like this, index
// images, browse and delete, and the stored duplicates (keep one per group). Every result
// card shows the server's verdict (match = a copy of the query, or merely similar); deletes
// are confirmed in the page first. Talks to the same origin's API with fetch; ids and metadata are
// shown with textContent only (never parsed as HTML), and the page's Content-Security-Policy
// allows no inline script. With API keys configured the key is kept in sessionStorage, so it
// lives as long as this tab.
"use strict";

const KEY_STORAGE = "simsearch.apiKey";
const PAGE_SIZE = 12;
const MIN_BOX_PX = 4;
const INDEX_BATCH = 8;
const DUP_PAGE = 10;
const LISTED_COPIES = 5; // uploads named in the index status line when they are copies

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  queryFile: null,
  box: null, // [x1, y1, x2, y2] in pixels of the (EXIF-oriented) image, or null
  cursors: [null], // cursor of each browsed page; cursors[i] fetches page i
  page: 0,
  thumbUrls: { results: [], browse: [], dups: [] }, // blob: URLs to revoke when a grid is redrawn
  dupCursor: null, // next_cursor of the last duplicates page
  dupRetry: null, // timer of a retry while the server scans for duplicates
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
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
    const retry = Number(resp.headers.get("Retry-After"));
    throw new ApiError(resp.status, detail, Number.isFinite(retry) && retry > 0 ? retry : null);
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

// ------------------------------------------------------------------ confirmation
// An in-page question (not window.confirm): resolves true when the user confirms.
function askConfirm(text, yesLabel = "Delete") {
  const panel = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yesLabel;
  panel.hidden = false;
  $("confirm-no").focus();
  return new Promise((resolve) => {
    const done = (answer) => {
      panel.hidden = true;
      $("confirm-yes").removeEventListener("click", yes);
      $("confirm-no").removeEventListener("click", no);
      document.removeEventListener("keydown", esc);
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    const esc = (event) => {
      if (event.key === "Escape") done(false);
    };
    $("confirm-yes").addEventListener("click", yes);
    $("confirm-no").addEventListener("click", no);
    document.addEventListener("keydown", esc);
  });
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

function makeCard({ id, score, metadata, match }, grid) {
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
  if (match !== undefined) {
    const verdict = document.createElement("span");
    verdict.className = `verdict ${match ? "match" : "similar"}`;
    verdict.dataset.testid = "verdict";
    verdict.textContent = match ? "match" : "similar";
    verdict.title = match ? "a copy or near-duplicate of the query" : "similar, not a copy";
    body.append(verdict);
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
  if (!results.length) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.dataset.testid = "no-results";
    empty.textContent =
      "No results: the collection is empty, or nothing passes the filter or the score threshold.";
    grid.replaceChildren(empty);
    return;
  }
  grid.replaceChildren(...results.map((hit) => makeCard(hit, "results")));
}

// What a search found, for the status line: how many results are copies of the query.
function verdictSummary(results) {
  if (!results.length) return "";
  const matches = results.filter((hit) => hit.match).length;
  if (!matches) return " · no copy of the query is stored: every result is merely similar";
  return ` · ${plural(matches, "match")} (a copy of the query)`;
}

// Says when a requested re-ranking did not run, and the server's reason.
function showRerankNote(body) {
  const note = $("rerank-note");
  note.textContent = body.rerank_skipped ? `Re-ranking skipped: ${body.rerank_skipped}` : "";
  note.hidden = !body.rerank_skipped;
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
    setStatus(
      "search-status",
      `${plural(body.results.length, "result")} in ${ms} ms${where}${verdictSummary(body.results)}`,
    );
    showRerankNote(body);
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
    setStatus(
      "search-status",
      `${plural(body.results.length, "result")} like ${id}${verdictSummary(body.results)}`,
    );
    showRerankNote(body);
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
  const copies = []; // "upload id (copy of stored id)" for uploads that duplicate stored items
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
      for (const file of body.files || []) {
        if (file.duplicates && file.duplicates.length) {
          copies.push(`${file.id} (copy of ${file.duplicates.map((d) => d.id).join(", ")})`);
        }
      }
    }
    let copyText = "";
    if (copies.length) {
      const more = copies.length > LISTED_COPIES ? `, and ${copies.length - LISTED_COPIES} more` : "";
      copyText = ` · ${plural(copies.length, "upload")} already stored as a copy: ` +
        copies.slice(0, LISTED_COPIES).join("; ") + more;
    }
    setStatus("index-status", `indexed ${indexed}${replaced ? `, ${replaced} replaced` : ""}${copyText}`);
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
  if (!(await askConfirm(`Delete ${id}? This cannot be undone.`))) {
    setStatus("browse-status", `kept ${id}`);
    return;
  }
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

// ------------------------------------------------------------------ duplicates
function makeGroup(group, number) {
  const box = document.createElement("div");
  box.className = "group";
  box.dataset.testid = "group";
  const title = document.createElement("h3");
  title.textContent =
    `Group ${number}: ${group.size} copies of one picture · highest score ${group.max_score.toFixed(3)}`;
  const grid = document.createElement("div");
  grid.className = "grid";
  const name = `keep-${number}`;
  const cards = group.ids.map((id) => {
    const card = makeCard({ id }, "dups");
    const label = document.createElement("label");
    label.className = "keep";
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = name;
    radio.value = id;
    radio.checked = id === group.representative;
    radio.dataset.testid = "keep";
    radio.addEventListener("change", () => markKept(grid, id));
    label.append(radio, document.createTextNode("keep this one"));
    card.querySelector(".body").prepend(label);
    return card;
  });
  grid.replaceChildren(...cards);
  markKept(grid, group.representative);
  const del = document.createElement("button");
  del.type = "button";
  del.className = "danger";
  del.dataset.testid = "delete-others";
  del.textContent = `Keep one, delete the other ${plural(group.size - 1, "item")}`;
  del.addEventListener("click", () => {
    const keep = grid.querySelector(`input[name="${name}"]:checked`).value;
    deleteOthers(keep, group.ids.filter((id) => id !== keep));
  });
  box.append(title, grid, del);
  return box;
}

function markKept(grid, keep) {
  for (const card of grid.querySelectorAll(".card")) card.classList.toggle("kept", card.dataset.id === keep);
}

async function deleteOthers(keep, others) {
  const copies = others.length === 1 ? "1 copy" : `${others.length} copies`;
  const question = `Keep ${keep} and delete ${copies}?\n` +
    `${others.join("\n")}\nThis cannot be undone.`;
  if (!(await askConfirm(question, `Delete ${others.length}`))) {
    setStatus("dups-status", "nothing deleted");
    return;
  }
  let deleted = 0;
  try {
    for (const id of others) {
      await apiJson(itemPath(id), { method: "DELETE" });
      deleted += 1;
    }
    setStatus("dups-status", `kept ${keep}, deleted ${deleted}`);
  } catch (err) {
    setStatus("dups-status", `${describeError(err)} (${deleted} deleted before the error)`, true);
  }
  loadServerInfo();
  loadDuplicates(false, true);
}

// First page (more = false) or the next one; `keepStatus` leaves the status line as it is.
async function loadDuplicates(more = false, keepStatus = false) {
  clearTimeout(state.dupRetry);
  const params = new URLSearchParams({ limit: String(DUP_PAGE) });
  if (more && state.dupCursor) params.set("cursor", state.dupCursor);
  if (!keepStatus) setStatus("dups-status", "looking for duplicates…");
  let body;
  try {
    body = await apiJson(`/duplicates?${params}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 503) {
      // The server is still scanning a large collection: say how far it got, ask again.
      setStatus("dups-status", err.detail);
      state.dupRetry = setTimeout(() => loadDuplicates(more, true), (err.retryAfter || 2) * 1000);
      return;
    }
    setStatus("dups-status", describeError(err), true);
    return;
  }
  const panel = $("dups");
  if (!more) {
    revokeThumbs("dups");
    panel.replaceChildren();
  }
  const start = panel.querySelectorAll(".group").length;
  panel.append(...body.groups.map((group, n) => makeGroup(group, start + n + 1)));
  state.dupCursor = body.next_cursor;
  $("dups-more").hidden = !body.next_cursor;
  $("dups-info").textContent = body.total_groups
    ? `${plural(body.total_groups, "group")}, ${plural(body.total_items, "item")} ` +
      `of ${body.items_checked} checked`
    : "";
  if (!body.total_groups) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.dataset.testid = "no-duplicates";
    empty.textContent = `No duplicates: none of the ${plural(body.items_checked, "stored item")} is a copy of another.`;
    panel.replaceChildren(empty);
  }
  if (!keepStatus) setStatus("dups-status", "");
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
  $("dups-btn").addEventListener("click", () => loadDuplicates(false));
  $("dups-more").addEventListener("click", () => loadDuplicates(true));
  loadServerInfo().then(() => browse(0));
}

document.addEventListener("DOMContentLoaded", init);
