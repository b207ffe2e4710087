// The page: one model (weights/denoise-color.safetensors) on WebGPU or, without it, on the CPU;
// a picture; a knob. Runs are coalesced: at most one is in flight and the latest knob value
// wins. window.tunable is the hook automated tests drive (tools/web/test.mjs).
import init, { Restorer, encodePng } from "./pkg/tunable.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MODEL_URL = new URL(params.get("model") || "../../weights/denoise-color.safetensors", import.meta.url);
const SAMPLE_URL = new URL("../../tests/data/astronaut.png", import.meta.url);

let restorer = null;
let axis = null;
let picture = null; // { rgba: Uint8ClampedArray, width, height }
let output = null; // { data: Uint8Array, width, height, alpha }
let before = null, after = null; // canvases holding the picture and the result
let split = 0.5;
let lastMs = null;
let firstLevelStats = null; // counters after the first run of the current picture size
let adapterInfo = "";

// ---- coalesced runs --------------------------------------------------------------------
let wanted = 0; // the knob value the next run uses
let requested = 0, done = 0; // request and completion sequence numbers
let running = null; // the promise of the pump while it runs
let waiters = []; // { seq, resolve, reject }

function request(alpha) {
  wanted = alpha;
  const seq = ++requested;
  const p = new Promise((resolve, reject) => waiters.push({ seq, resolve, reject }));
  if (!running) running = pump().finally(() => (running = null));
  return p;
}

async function pump() {
  $("levelLabel").classList.add("busy");
  while (done < requested) {
    const seq = requested, alpha = wanted, pic = picture;
    const t0 = performance.now();
    let result = null, error = null;
    try {
      const data = await restorer.run(alpha);
      result = { data, width: pic.width, height: pic.height, alpha };
    } catch (e) {
      error = e;
    }
    const ms = performance.now() - t0;
    done = seq;
    if (result && pic === picture) {
      output = result;
      lastMs = ms;
      showResult();
      const s = restorer.stats();
      if (!firstLevelStats) firstLevelStats = s;
    }
    showError(error);
    const ready = waiters.filter((w) => w.seq <= seq);
    waiters = waiters.filter((w) => w.seq > seq);
    for (const w of ready) (error ? w.reject(error) : w.resolve(result));
    showStats();
  }
  $("levelLabel").classList.remove("busy");
}

// ---- pictures ----------------------------------------------------------------------------
function canvasOf(width, height) {
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  return c;
}

function setPicture(rgba, width, height) {
  if (!restorer) throw new Error("the model is not loaded yet");
  restorer.setImage(rgba, width, height);
  picture = { rgba, width, height };
  output = null;
  firstLevelStats = null;
  before = canvasOf(width, height);
  before.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
  after = null;
  const view = $("view");
  view.width = width;
  view.height = height;
  // Small pictures are shown enlarged (by whole pixels from 2x up), big ones fit the window.
  const k = Math.max(1, 480 / Math.max(width, height));
  view.style.width = `${Math.round(width * (k >= 2 ? Math.floor(k) : k))}px`;
  view.style.imageRendering = k >= 2 ? "pixelated" : "auto";
  $("stage").classList.add("shown");
  $("hint").hidden = true;
  $("estimate").disabled = false;
  draw();
  return request(Number($("level").value));
}

// Pixels of a decoded picture, scaled so its longer side is at most the work size.
function pixelsOf(bitmap) {
  const max = Number($("size").value) || Infinity;
  const k = Math.min(1, max / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * k)), h = Math.max(1, Math.round(bitmap.height * k));
  const c = canvasOf(w, h);
  const g = c.getContext("2d", { willReadFrequently: true });
  g.imageSmoothingQuality = "high";
  g.drawImage(bitmap, 0, 0, w, h);
  return { rgba: g.getImageData(0, 0, w, h).data, width: w, height: h };
}

async function openBlob(blob) {
  try {
    const bitmap = await createImageBitmap(blob);
    const p = pixelsOf(bitmap);
    await setPicture(p.rgba, p.width, p.height);
  } catch (e) {
    showError(e);
  }
}

// The astronaut photo with N(0, 30^2) noise (a fixed seed), rounded and clipped to 8 bits.
async function openSample() {
  const bitmap = await createImageBitmap(await (await fetch(SAMPLE_URL)).blob());
  const p = pixelsOf(bitmap);
  let s = 12345;
  const uniform = () => ((s = (s * 1103515245 + 12345) >>> 0) + 0.5) / 4294967296;
  const gauss = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  for (let i = 0; i < p.rgba.length; i++) {
    if (i % 4 !== 3) p.rgba[i] = Math.round(p.rgba[i] + 30 * gauss()); // clamped array: clips
  }
  await setPicture(p.rgba, p.width, p.height);
}

// ---- drawing -----------------------------------------------------------------------------
function showResult() {
  after = canvasOf(output.width, output.height);
  const rgba = new Uint8ClampedArray(output.data.buffer, output.data.byteOffset, output.data.length);
  after.getContext("2d").putImageData(new ImageData(rgba, output.width, output.height), 0, 0);
  $("download").disabled = false;
  draw();
}

function draw() {
  if (!before) return;
  const view = $("view"), g = view.getContext("2d");
  const mode = document.querySelector('input[name="view"]:checked').value;
  const shown = mode === "before" || !after ? before : after;
  g.drawImage(shown, 0, 0);
  if (mode === "split" && after) {
    const x = Math.round(split * view.width);
    g.drawImage(before, 0, 0, x, view.height, 0, 0, x, view.height);
    g.fillStyle = "#fff";
    g.fillRect(x - Math.max(1, view.width / 400), 0, Math.max(1, view.width / 200), view.height);
  }
  $("tagBefore").hidden = mode === "after" || !after;
  $("tagAfter").hidden = mode === "before" || !after;
}

// ---- the knob ----------------------------------------------------------------------------
function label(alpha) {
  const sigma = restorer.sigmaForAlpha(alpha);
  const a = `${axis.name} ${alpha.toFixed(3)}`;
  if (sigma !== undefined) return `${axis.unit} ${sigma.toFixed(1)} (${a})`;
  const t = axis.calibration;
  if (!t.length) return a;
  return alpha < t[0][1]
    ? `below ${axis.unit} ${t[0][0]} (extrapolated, ${a})`
    : `above ${axis.unit} ${t[t.length - 1][0]} (extrapolated, ${a})`;
}

function setKnob(alpha) {
  $("level").value = String(alpha);
  $("levelLabel").textContent = label(Number($("level").value));
}

function estimate() {
  const sigma = restorer.estimateSigma();
  const alpha = restorer.alphaForSigma(sigma);
  setKnob(alpha);
  $("status").textContent = `${statusLine()}: estimated noise ${axis.unit} ${sigma.toFixed(1)}`;
  return { sigma, alpha, done: request(alpha) };
}

// ---- status ------------------------------------------------------------------------------
function statusLine() {
  return restorer.backend === "webgpu"
    ? `WebGPU on ${adapterName()}, model ${restorer.modelName}`
    : `CPU fallback, model ${restorer.modelName}`;
}

function adapterName() {
  const rust = restorer.adapter;
  return rust === "WebGPU adapter" && adapterInfo ? adapterInfo : rust;
}

function stats() {
  const s = restorer.stats();
  s.adapter = adapterName();
  return s;
}

function showStats() {
  if (!restorer) return;
  const s = stats();
  const parts = [];
  if (output) parts.push(`last run ${lastMs.toFixed(0)} ms at ${output.width}x${output.height}`);
  if (s.backend === "webgpu") {
    parts.push(`${s.pipelines} pipelines, ${s.buffers} buffers, ${(s.weightUploads / 1e6).toFixed(2)} MB of weights uploaded`);
    if (firstLevelStats && s.levelWrites > firstLevelStats.levelWrites) {
      const n = s.levelWrites - firstLevelStats.levelWrites;
      parts.push(
        `${n} level change(s) since this picture's first run: +${s.pipelines - firstLevelStats.pipelines} pipelines, ` +
          `+${s.buffers - firstLevelStats.buffers} buffers, +${s.weightUploads - firstLevelStats.weightUploads} weight bytes, ` +
          `${(s.otherBytes - firstLevelStats.otherBytes) / n} bytes written per change`,
      );
    }
  } else {
    parts.push(`${s.levelWrites} runs on the CPU`);
  }
  $("stats").textContent = parts.join(" · ");
}

function showError(e) {
  $("error").hidden = !e;
  $("error").textContent = e ? `error: ${e.message || e}` : "";
}

// ---- start -------------------------------------------------------------------------------
async function jsAdapterInfo() {
  try {
    const a = await navigator.gpu?.requestAdapter();
    const i = a?.info;
    if (!i) return "";
    return [i.vendor, i.architecture, i.device, i.description].filter((x) => x).join(" ");
  } catch {
    return "";
  }
}

async function start() {
  await init();
  const [bytes, info] = await Promise.all([
    fetch(MODEL_URL).then((r) => {
      if (!r.ok) throw new Error(`${MODEL_URL}: HTTP ${r.status}`);
      return r.arrayBuffer();
    }),
    jsAdapterInfo(),
  ]);
  adapterInfo = info;
  restorer = await Restorer.create(new Uint8Array(bytes), params.has("cpu"));
  axis = restorer.axis();
  const knob = $("level");
  knob.min = axis.lo;
  knob.max = axis.hi;
  for (const [, a] of axis.calibration) {
    const o = document.createElement("option");
    o.value = a;
    $("ticks").appendChild(o);
  }
  knob.disabled = false;
  $("size").value = restorer.backend === "webgpu" ? "1024" : "256";
  setKnob(restorer.alphaForSigma(25));
  $("status").textContent = statusLine();
  if (restorer.backend !== "webgpu") {
    $("warn").hidden = false;
    $("warn").textContent =
      `WebGPU is not available (${restorer.fallback}). Running on the CPU fallback: ` +
      "one thread, far slower than a GPU on big pictures, and the page freezes while it works; " +
      "pictures are scaled to 256 px by default.";
  }
  showStats();
}

const ready = start();
ready.catch((e) => {
  $("status").textContent = "The page could not start.";
  showError(e);
});

// ---- events ------------------------------------------------------------------------------
$("level").addEventListener("input", () => {
  $("levelLabel").textContent = label(Number($("level").value));
  if (picture) request(Number($("level").value)).catch(showError);
});
$("estimate").addEventListener("click", () => estimate().done.catch(showError));
$("file").addEventListener("change", (e) => e.target.files[0] && openBlob(e.target.files[0]));
$("sample").addEventListener("click", () => openSample().catch(showError));
for (const r of document.querySelectorAll('input[name="view"]')) r.addEventListener("change", draw);
$("download").addEventListener("click", () => {
  if (!output) return;
  const png = encodePng(output.data, output.width, output.height);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([png], { type: "image/png" }));
  const sigma = restorer.sigmaForAlpha(output.alpha);
  a.download = sigma !== undefined ? `restored-sigma${sigma.toFixed(0)}.png` : `restored-alpha${output.alpha.toFixed(2)}.png`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
});
const view = $("view");
function splitAt(e) {
  const r = view.getBoundingClientRect();
  split = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
  draw();
}
view.addEventListener("pointerdown", (e) => {
  view.setPointerCapture(e.pointerId);
  splitAt(e);
});
view.addEventListener("pointermove", (e) => view.hasPointerCapture(e.pointerId) && splitAt(e));
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", (e) => {
  if (!e.relatedTarget) document.body.classList.remove("dragging");
});
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  const f = [...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
  if (f) openBlob(f);
});

// ---- the test hook -----------------------------------------------------------------------
window.tunable = {
  // Resolves once the model is loaded (on WebGPU or the CPU).
  ready: ready.then(() => undefined),
  // Sets a picture of RGBA8 pixels; resolves when its output at the knob's level is ready.
  setImage: async (rgba, width, height) => {
    await ready;
    return setPicture(new Uint8ClampedArray(rgba), width, height);
  },
  // Moves the knob to `alpha` (the model's first axis, as `tunable restore --level`);
  // resolves when the output at that level is ready (a later value wins if several come).
  setLevel: async (alpha) => {
    await ready;
    setKnob(alpha);
    return request(alpha);
  },
  // The last output: { data: Uint8Array (RGBA8), width, height, alpha }, after any run in
  // flight (read back from the GPU with mapAsync, not from the canvas).
  output: async () => {
    while (running) await running;
    if (!output) throw new Error("no output yet");
    return { data: output.data, width: output.width, height: output.height, alpha: output.alpha };
  },
  // { adapter, backend, pipelines, buffers, weightUploads, levelWrites, ... } (see src/web.rs).
  stats: () => stats(),
  // Sets the knob from the blind noise estimate; resolves with { sigma, alpha } once run.
  estimate: async () => {
    await ready;
    const e = estimate();
    await e.done;
    return { sigma: e.sigma, alpha: e.alpha };
  },
  // The size of the picture set last (by the hook, the file picker or a drop), or null.
  picture: () => picture && { width: picture.width, height: picture.height },
  // Why the CPU runs (undefined on WebGPU), and the last run's time in milliseconds.
  fallback: () => restorer?.fallback,
  lastRunMs: () => lastMs,
};
