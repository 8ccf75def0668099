// inspector review: the queue, frame and summary pages. Plain JavaScript, no library; the JSON API is described
// in inspector/review/app.py. Filters travel in the URL (verdict, camera, defect_class, model_version, reviewed).
"use strict";

const FILTERS = ["verdict", "camera", "defect_class", "model_version", "reviewed"];
const FILTER_IDS = {verdict: "filter-verdict", camera: "filter-camera", defect_class: "filter-class",
                    model_version: "filter-version", reviewed: "filter-reviewed"};
const QUEUE_LIMIT = 2000;  // frames listed on the queue page at most
const REVIEWER_KEY = "inspector.reviewer";
const FLASH_KEY = "inspector.flash";

const $ = (id) => document.getElementById(id);

function element(tag, attrs, text) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined && text !== null) el.textContent = String(text);
  return el;
}

function filtersOf(search) {
  const given = new URLSearchParams(search), kept = new URLSearchParams();
  for (const name of FILTERS) if (given.get(name)) kept.set(name, given.get(name));
  return kept;
}

function withQuery(path, params) {
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function frameUrl(image, filters) {
  const params = new URLSearchParams({image});
  for (const [k, v] of filters) params.set(k, v);
  return "/frame?" + params.toString();
}

function fileUrl(prefix, path) {
  return prefix + path.split("/").map(encodeURIComponent).join("/");
}

async function api(url, options) {
  const init = Object.assign({credentials: "same-origin"}, options || {});
  init.headers = Object.assign({"Accept": "application/json"}, (options && options.headers) || {});
  const response = await fetch(url, init);
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function setStatus(text, isError) {
  const status = $("status");
  if (!status) return;
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function fixed(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "";
}

// the reviewer's name: ?reviewer= on any page, kept in localStorage and sent with each answer
function reviewer() {
  try {
    const given = new URLSearchParams(location.search).get("reviewer");
    if (given !== null) localStorage.setItem(REVIEWER_KEY, given.slice(0, 80));
    return localStorage.getItem(REVIEWER_KEY) || "";
  } catch (err) {
    return "";
  }
}

function showReviewer() {
  const name = reviewer(), el = $("reviewer");
  if (el) el.textContent = name ? `reviewer: ${name}` : "";
}

// ---- queue page ----------------------------------------------------------------------------------------------

function fillSelect(select, values, current) {
  const all = select.querySelector("option[value='']");
  select.replaceChildren(all || element("option", {value: ""}, "all"));
  const list = values.slice();
  if (current && !list.includes(current)) list.push(current);
  for (const value of list) select.append(element("option", {value}, value));
  select.value = current || "";
}

function queueItem(frame, filters) {
  const answer = frame.answer;
  const item = element("a", {class: "item", "data-image": frame.image, href: frameUrl(frame.image, filters)});
  if (answer) item.classList.add("reviewed");
  item.append(element("img", {src: fileUrl("/thumbs/", frame.image), alt: "", loading: "lazy"}));
  const info = element("span", {class: "info"});
  info.append(element("span", {class: `verdict verdict-${frame.verdict || ""}`}, frame.verdict || ""));
  info.append(element("span", {class: "camera"}, frame.camera_id || ""));
  info.append(element("span", {class: "class"}, frame.defect_class || ""));
  info.append(element("span", {class: "score"}, fixed(frame.defect_score, 3)));
  if (answer) info.append(element("span", {class: "answer"}, answer.label));
  else info.append(element("span", {class: "pending"}, "to review"));
  info.append(element("span", {class: "time"}, (frame.received_at || "").replace("T", " ").slice(0, 19)));
  item.append(info);
  return item;
}

async function queuePage() {
  const filters = filtersOf(location.search);
  $("summary-link").href = withQuery("/summary", filters);
  const query = new URLSearchParams(filters);
  query.set("limit", String(QUEUE_LIMIT));
  let data;
  try {
    data = await api("/api/frames?" + query.toString());
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  for (const name of FILTERS) {
    const select = $(FILTER_IDS[name]);
    if (name === "reviewed") select.value = filters.get(name) || "";
    else fillSelect(select, data.options[name] || [], filters.get(name) || "");
    select.addEventListener("change", () => {
      const next = filtersOf(location.search);
      if (select.value) next.set(name, select.value); else next.delete(name);
      location.assign(withQuery("/", next));
    });
  }
  const shown = data.frames.length < data.count ? ` (the newest ${data.frames.length} shown)` : "";
  $("count").textContent = `${data.count} of ${data.total} frames${shown}`;
  const queue = $("queue");
  queue.replaceChildren(...data.frames.map((frame) => queueItem(frame, filters)));
  if (!data.frames.length) {
    setStatus(data.total ? "no frame passes these filters" : "the audit folder holds no frame yet");
  }
  document.body.classList.add("ready");
}

// ---- frame page ----------------------------------------------------------------------------------------------

const view = {
  data: null, image: "", filters: null, width: 0, height: 0,
  maskState: "model",  // "model": the canvas holds the model's mask; "none": erased; "painted": edited
  paint: false, eraser: false, drawing: false, erasing: false, last: null, busy: false,
};

function maskContext() {
  return $("layer-mask").getContext("2d", {willReadFrequently: true});
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${url}`));
    img.src = url;
  });
}

// draws the 0/255 mask file at `path` on the mask canvas as opaque red (the canvas is shown semi-transparent)
async function drawMaskFile(path) {
  const ctx = maskContext();
  ctx.clearRect(0, 0, view.width, view.height);
  if (!path) return;
  const img = await loadImage(fileUrl("/files/", path));
  const scratch = element("canvas", {width: view.width, height: view.height});
  const sctx = scratch.getContext("2d", {willReadFrequently: true});
  sctx.imageSmoothingEnabled = false;
  sctx.drawImage(img, 0, 0, view.width, view.height);
  const source = sctx.getImageData(0, 0, view.width, view.height).data;
  const out = ctx.createImageData(view.width, view.height);
  for (let i = 0; i < source.length; i += 4) {
    if (source[i] > 127 && source[i + 3] > 127) { out.data[i] = 255; out.data[i + 3] = 255; }
  }
  ctx.putImageData(out, 0, 0);
}

function maskPixels() {
  return maskContext().getImageData(0, 0, view.width, view.height).data;
}

function maskIsEmpty() {
  const data = maskPixels();
  for (let i = 3; i < data.length; i += 4) if (data[i] >= 128) return false;
  return true;
}

// the mask canvas as a single-channel-equivalent PNG: white (255) where painted, black elsewhere, opaque, base64
function maskPng() {
  const data = maskPixels();
  const scratch = element("canvas", {width: view.width, height: view.height});
  const sctx = scratch.getContext("2d");
  const out = sctx.createImageData(view.width, view.height);
  for (let i = 0; i < data.length; i += 4) {
    const v = data[i + 3] >= 128 ? 255 : 0;
    out.data[i] = v; out.data[i + 1] = v; out.data[i + 2] = v; out.data[i + 3] = 255;
  }
  sctx.putImageData(out, 0, 0);
  return scratch.toDataURL("image/png").split(",", 2)[1];
}

// the regions as boxes placed in percent of the frame, so they follow the frame's displayed size
function drawRegions(regions) {
  const layer = $("layer-regions");
  layer.replaceChildren();
  const percent = (value, total) => `${(100 * value / total).toFixed(4)}%`;
  for (const region of regions || []) {
    const box = element("div", {class: "region", "data-class": region.defect_class});
    box.style.left = percent(region.x, view.width);
    box.style.top = percent(region.y, view.height);
    box.style.width = percent(region.width, view.width);
    box.style.height = percent(region.height, view.height);
    box.append(element("span", {class: "region-label"}, `${region.defect_class} ${fixed(region.max_score, 2)}`));
    layer.append(box);
  }
}

// the frame as large as the window allows (small frames scaled up, megapixel ones down); the layers follow it
function fitStage() {
  if (!view.width) return;
  const stage = $("stage"), viewer = stage.parentElement;
  const width = viewer.clientWidth, height = window.innerHeight - stage.getBoundingClientRect().top - 16;
  const scale = Math.max(0.05, Math.min(width / view.width, Math.max(height, 200) / view.height));
  $("frame").style.width = `${Math.floor(view.width * scale)}px`;
  $("frame").style.height = `${Math.floor(view.height * scale)}px`;
  stage.classList.toggle("zoomed", scale > 2);
}

function showLayer(layer, checkbox) {
  if (layer) layer.style.display = checkbox.checked ? "" : "none";
}

function describeAnswer(answer, answerMask) {
  const el = $("answer");
  if (!answer) { el.hidden = true; el.textContent = ""; delete el.dataset.label; return; }
  const mask = !answerMask ? "no mask" : answer.mask === "model" || answer.mask === undefined ? "the model's mask"
    : "a painted mask";
  const who = answer.reviewer ? ` by ${answer.reviewer}` : "";
  const when = answer.at ? ` at ${answer.at.replace("T", " ").slice(0, 19)}` : "";
  el.textContent = `answer: ${answer.label} (${mask})${who}${when}`;
  el.dataset.label = answer.label;
  el.hidden = false;
}

function fillDetails(record) {
  $("verdict").textContent = record.verdict || "";
  $("verdict").className = `verdict verdict-${record.verdict || ""}`;
  $("model-label").textContent = record.label || "";
  $("defect-class").textContent = record.defect_class || "";
  $("defect-score").textContent = fixed(record.defect_score, 3);
  $("anomaly-score").textContent = record.anomaly_score == null ? "–" : fixed(record.anomaly_score, 3);
  $("model-version").textContent = record.model_version || "";
  $("camera").textContent = `${record.camera_id || ""} / ${record.frame_id || ""}`;
  $("capture-time").textContent = record.capture_time || "–";
  $("received-at").textContent = record.received_at || "";
  const body = $("class-scores").tBodies[0];
  body.replaceChildren();
  const scores = Object.entries(record.class_scores || {}).sort((a, b) => b[1] - a[1]);
  for (const [name, score] of scores) {
    const row = element("tr");
    row.append(element("th", {}, name), element("td", {}, fixed(score, 3)));
    body.append(row);
  }
}

function setMode(paint, eraser) {
  view.paint = paint;
  view.eraser = eraser;
  $("brush").setAttribute("aria-pressed", String(paint));
  $("brush").classList.toggle("on", paint);
  $("eraser").setAttribute("aria-pressed", String(eraser));
  $("eraser").classList.toggle("on", eraser);
  $("layer-mask").classList.toggle("painting", paint);
}

function canvasPoint(event) {
  const canvas = $("layer-mask"), box = canvas.getBoundingClientRect();
  return {x: (event.clientX - box.left) * canvas.width / box.width,
          y: (event.clientY - box.top) * canvas.height / box.height};
}

function paintTo(point) {
  const ctx = maskContext();
  const radius = Number($("brush-size").value) || 8;
  ctx.save();
  ctx.globalCompositeOperation = view.erasing ? "destination-out" : "source-over";
  ctx.fillStyle = ctx.strokeStyle = "rgb(255, 0, 0)";
  if (view.last) {
    ctx.lineWidth = radius * 2;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(view.last.x, view.last.y);
    ctx.lineTo(point.x, point.y);
    ctx.stroke();
  }
  ctx.beginPath();
  ctx.arc(point.x, point.y, radius, 0, Math.PI * 2);
  ctx.fill();
  ctx.restore();
  view.last = point;
  view.maskState = "painted";
}

function bindPainting() {
  const canvas = $("layer-mask");
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("mousedown", (event) => {
    if (!view.paint || (event.button !== 0 && event.button !== 2)) return;
    event.preventDefault();
    view.drawing = true;
    view.erasing = view.eraser || event.button === 2;
    view.last = null;
    paintTo(canvasPoint(event));
  });
  canvas.addEventListener("mousemove", (event) => {
    if (view.drawing && view.paint) paintTo(canvasPoint(event));
  });
  const stop = () => { view.drawing = false; view.last = null; };
  canvas.addEventListener("mouseup", stop);
  canvas.addEventListener("mouseleave", stop);
  window.addEventListener("mouseup", stop);
}

function eraseMask() {
  maskContext().clearRect(0, 0, view.width, view.height);
  view.maskState = "none";
  setStatus("mask erased");
}

function go(image, missing) {
  if (image) location.assign(frameUrl(image, view.filters));
  else setStatus(missing);
}

async function save(label, mask) {
  if (view.busy || !view.data) return;
  view.busy = true;
  const body = {image: view.image, label, mask, reviewer: reviewer()};
  if (mask === "painted") {
    if (maskIsEmpty()) body.mask = "none";
    else body.mask_png = maskPng();
  }
  setStatus("saving…");
  try {
    await api("/api/reviews", {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body)});
  } catch (err) {
    view.busy = false;
    setStatus(err.message, true);
    return;
  }
  setStatus("saved");
  let fresh = null;
  try {
    fresh = await api(withQuery("/api/frame", new URLSearchParams([["image", view.image], ...view.filters])));
  } catch (err) {
    fresh = null;
  }
  if (fresh && fresh.next_unreviewed) {
    try { sessionStorage.setItem(FLASH_KEY, "saved"); } catch (err) { /* private mode: no flash */ }
    location.assign(frameUrl(fresh.next_unreviewed, view.filters));
    return;
  }
  if (fresh) {
    view.data = fresh;
    describeAnswer(fresh.answer, fresh.answer_mask);
  }
  $("notice").textContent = "every frame of this queue has an answer";
  view.busy = false;
}

function saveChosen() {
  save($("label").value, view.maskState);
}

function confirmModel() {
  const label = view.data.record.label;
  if ([...$("label").options].some((option) => option.value === label)) $("label").value = label;
  save(label, "model");
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || !view.data) return;
  const target = event.target;
  const key = event.key;
  if (target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type === "text"))) return;
  if (target && target.tagName === "INPUT" && target.type === "range" && key.startsWith("Arrow")) return;
  let handled = true;
  if (key === "Enter" || key === "c") confirmModel();
  else if (/^[0-9]$/.test(key)) {
    const options = $("label").options, n = Number(key);
    if (n < options.length) { $("label").selectedIndex = n; saveChosen(); }
  } else if (key === "e") eraseMask();
  else if (key === "b") setMode(!view.paint, view.paint ? false : view.eraser);
  else if (key === "s") saveChosen();
  else if (key === "ArrowRight" || key === "n") go(view.data.next, "this is the last frame of the queue");
  else if (key === "ArrowLeft" || key === "p") go(view.data.prev, "this is the first frame of the queue");
  else handled = false;
  if (handled) event.preventDefault();
}

async function framePage() {
  const params = new URLSearchParams(location.search);
  view.image = params.get("image") || "";
  view.filters = filtersOf(location.search);
  $("back").href = withQuery("/", view.filters);
  $("summary-link").href = withQuery("/summary", view.filters);
  try {
    const flash = sessionStorage.getItem(FLASH_KEY);
    if (flash) { sessionStorage.removeItem(FLASH_KEY); setStatus(flash); }
  } catch (err) { /* no session storage */ }
  let data;
  try {
    data = await api(withQuery("/api/frame", new URLSearchParams([["image", view.image], ...view.filters])));
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const record = data.record;
  fillDetails(record);
  $("position").textContent = data.position ? `${data.position} / ${data.count}` : `${data.count} in the queue`;
  const select = $("label");
  select.replaceChildren(...data.labels.map((label) => element("option", {value: label}, label)));
  select.value = data.answer ? data.answer.label : record.label;
  describeAnswer(data.answer, data.answer_mask);

  const frame = $("frame");
  try {
    const img = await loadImage(fileUrl("/files/", record.image));
    frame.src = img.src;
    view.width = img.naturalWidth;
    view.height = img.naturalHeight;
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const canvas = $("layer-mask");
  canvas.width = view.width;
  canvas.height = view.height;
  fitStage();
  window.addEventListener("resize", fitStage);
  const answer = data.answer;
  // what the canvas holds, so that saving it unchanged sends the same kind of mask
  if (!answer) view.maskState = "model";
  else if (answer.mask === "none") view.maskState = "none";
  else if (!data.answer_mask) view.maskState = record.mask ? "none" : "model";  // a good part; older relabels
  else view.maskState = data.answer_mask === record.mask ? "model" : "painted";
  try {
    await drawMaskFile(answer ? data.answer_mask : record.mask);
  } catch (err) {
    setStatus(err.message, true);
  }
  drawRegions(record.regions);

  if (record.anomaly_map) {
    const anomaly = element("img", {id: "layer-anomaly", class: "layer anomaly", alt: "anomaly map",
                                    src: fileUrl("/files/", record.anomaly_map)});
    $("stage").insertBefore(anomaly, canvas);
    $("show-anomaly").disabled = false;
    $("show-anomaly").checked = true;
  } else {
    $("show-anomaly-label").classList.add("unavailable");
  }
  const toggles = [["show-mask", "layer-mask"], ["show-regions", "layer-regions"], ["show-anomaly", "layer-anomaly"]];
  for (const [box, layer] of toggles) {
    $(box).addEventListener("change", () => showLayer($(layer), $(box)));
    showLayer($(layer), $(box));
  }
  const sizeOut = $("brush-size-value");
  $("brush-size").addEventListener("input", () => { sizeOut.textContent = $("brush-size").value; });
  sizeOut.textContent = $("brush-size").value;
  $("confirm").addEventListener("click", confirmModel);
  $("save").addEventListener("click", saveChosen);
  $("erase").addEventListener("click", eraseMask);
  $("brush").addEventListener("click", () => setMode(!view.paint, view.paint ? false : view.eraser));
  $("eraser").addEventListener("click", () => setMode(view.eraser ? view.paint : true, !view.eraser));
  $("prev").addEventListener("click", () => go(data.prev, "this is the first frame of the queue"));
  $("next").addEventListener("click", () => go(data.next, "this is the last frame of the queue"));
  $("prev").disabled = !data.prev;
  $("next").disabled = !data.next;
  bindPainting();
  view.data = data;
  document.addEventListener("keydown", onKey);
  document.body.classList.add("ready");
}

// ---- summary page --------------------------------------------------------------------------------------------

async function summaryPage() {
  const filters = filtersOf(location.search);
  $("back").href = withQuery("/", filters);
  let data;
  try {
    data = await api(withQuery("/api/summary", filters));
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  $("reviewed-count").textContent = `${data.reviewed} / ${data.total}`;
  const body = $("agreement").tBodies[0];
  body.replaceChildren(...data.agreement.map((row) => {
    const tr = element("tr", {"data-label": row.label});
    tr.append(element("th", {}, row.label), element("td", {class: "answers"}, row.answers),
              element("td", {class: "confirmed"}, row.confirmed), element("td", {class: "relabelled"}, row.relabelled),
              element("td", {class: "agreement"}, `${(100 * row.agreement).toFixed(1)} %`));
    return tr;
  }));
  const escapes = $("escapes");
  escapes.querySelector(".count").textContent = String(data.escapes.count);
  escapes.querySelector("ul").replaceChildren(...data.escapes.frames.map((frame) => {
    const li = element("li");
    li.append(element("a", {href: frameUrl(frame.image, filters), "data-image": frame.image},
                      `${frame.camera_id} / ${frame.frame_id}: ${frame.label}`));
    return li;
  }));
  if (data.unreadable_lines) setStatus(`${data.unreadable_lines} unreadable line(s) skipped`);
  document.body.classList.add("ready");
}

// ---- start ---------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  showReviewer();
  const page = document.body.dataset.page;
  const run = page === "queue" ? queuePage : page === "frame" ? framePage : page === "summary" ? summaryPage : null;
  if (run) run().catch((err) => setStatus(String(err.message || err), true));
});
