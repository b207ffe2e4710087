// The browser test of tools/web/: Debian's chromium (no browser download) driven by
// playwright-core, on a software WebGPU adapter (SwiftShader), against the native CPU
// reference output of the same model on the same pictures.
//
//   bash tools/web/build.sh && (cd tools/web && npm ci) && node tools/web/test.mjs
//
// It serves the repository root on 127.0.0.1, opens the page, sets a generated noisy picture
// through window.tunable, runs it at three levels on WebGPU and compares each output (read
// back with mapAsync in the page, never from a screenshot) with `tunable --backend reference
// restore --level A` of the same picture: at most 2/255 apart. It checks that level changes
// (three set by the hook, then a real mouse drag of the slider) create no pipeline and no
// buffer and upload no weight, that runs are coalesced while dragging, that a second picture
// of another (odd) size matches too, and that "estimate" finds the noise. It takes a screenshot
// of the page with the slider moved (target/web-test/page.png) and prints the time from a
// level change to its output at 256x256 and 512x512 on WebGPU and on the CPU fallback.
//
// Environment: CHROMIUM (default /usr/bin/chromium), TUNABLE_BIN (default: cargo builds
// target/release/tunable), TUNABLE_WEB_GPU_SIZES and TUNABLE_WEB_CPU_SIZES (the square sizes
// timed on WebGPU and on the CPU fallback; default "256", "" for none), TUNABLE_WEB_TIMING_CHANGES
// (level changes timed per size, default 1).
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync, inflateSync } from "node:zlib";
import { chromium } from "playwright-core";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const OUT = join(ROOT, "target", "web-test");
const MODEL = "weights/denoise-color.safetensors";
const LEVELS = [0.0, 0.45, 1.0];
const TOLERANCE = 2; // of 255
const FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--disable-vulkan-surface",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];

const t0 = Date.now();
const log = (m) => console.log(`web-test [${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}`);
let failures = 0;
function check(ok, what) {
  log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

// ---- pictures and PNG ------------------------------------------------------------------
// A seeded generator (LCG) and its Gaussian (Box-Muller).
function rng(seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  return { u, gauss: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) };
}

// A smooth picture with edges (gradients, a disc, stripes) plus N(0, sigma^2) noise,
// rounded and clipped to 8 bits: RGB, row-major.
function picture(w, h, sigma, seed) {
  const r = rng(seed);
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const disc = (x - 0.6 * w) ** 2 + (y - 0.45 * h) ** 2 < (0.25 * Math.min(w, h)) ** 2;
      const stripe = Math.floor(x / 6) % 2 === 0 && y > 0.7 * h;
      const base = [
        40 + (170 * x) / w,
        60 + (140 * y) / h,
        disc ? 210 : 90 + 60 * Math.sin(x / 9 + y / 13),
      ];
      for (let c = 0; c < 3; c++) {
        const v = (stripe ? base[c] * 0.4 : base[c]) + sigma * r.gauss();
        rgb[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return { rgb, width: w, height: h };
}

const rgba = ({ rgb, width, height }) => {
  const out = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    out.set(rgb.subarray(i * 3, i * 3 + 3), i * 4);
    out[i * 4 + 3] = 255;
  }
  return out;
};

const CRC = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}
function encodePng({ rgb, width, height }) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  }
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([sig, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}
// 8-bit gray, RGB or RGBA PNG to RGB.
function decodePng(buf) {
  let pos = 8, width, height, type, idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), kind = buf.toString("latin1", pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[12] !== 0) throw new Error("only 8-bit, non-interlaced PNG");
      type = data[9];
    } else if (kind === "IDAT") idat.push(data);
    pos += 12 + len;
  }
  const bpp = { 0: 1, 2: 3, 6: 4 }[type];
  const raw = inflateSync(Buffer.concat(idat)), stride = width * bpp;
  const px = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? px[y * stride + i - bpp] : 0, b = y ? px[(y - 1) * stride + i] : 0;
      const c = i >= bpp && y ? px[(y - 1) * stride + i - bpp] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
      px[y * stride + i] = (line[i] + pred) & 0xff;
    }
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = px[i * bpp + (bpp === 1 ? 0 : c)];
  }
  return { rgb, width, height };
}

// max |a - b| over RGB, the mean, and how many values differ by more than 1.
function compare(webRgba, ref) {
  let max = 0, sum = 0, over1 = 0;
  for (let i = 0; i < ref.width * ref.height; i++) {
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(webRgba[i * 4 + c] - ref.rgb[i * 3 + c]);
      max = Math.max(max, d);
      sum += d;
      if (d > 1) over1++;
    }
  }
  return { max, mean: sum / (ref.width * ref.height * 3), over1 };
}

// ---- the native reference -------------------------------------------------------------
function tunableBin() {
  if (process.env.TUNABLE_BIN) return process.env.TUNABLE_BIN;
  execFileSync("cargo", ["build", "--release", "--bin", "tunable"], { cwd: ROOT, stdio: "inherit" });
  return join(process.env.CARGO_TARGET_DIR || join(ROOT, "target"), "release", "tunable");
}

// `tunable --backend reference restore` of the pictures at `level`: decoded outputs by name.
function reference(bin, files, level) {
  const dir = join(OUT, `ref-${level}`);
  mkdirSync(dir, { recursive: true });
  execFileSync(
    bin,
    ["--backend", "reference", "restore", ...files, "-o", dir + sep, "--model", join(ROOT, MODEL), "--level", String(level)],
    { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] },
  );
  return Object.fromEntries(files.map((f) => [f, decodePng(readFileSync(join(dir, f.split(sep).pop())))]));
}

// ---- the static server ----------------------------------------------------------------
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".json": "application/json",
  ".safetensors": "application/octet-stream",
};
function serve() {
  const server = createServer((req, res) => {
    const path = normalize(join(ROOT, decodeURIComponent(new URL(req.url, "http://x").pathname)));
    if (!path.startsWith(ROOT + sep) || !existsSync(path)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(path);
      res.writeHead(200, { "content-type": TYPES[extname(path)] || "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

// ---- the page -------------------------------------------------------------------------
const b64 = (u8) => Buffer.from(u8).toString("base64");

async function openPage(browser, url) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on("console", (m) => (m.type() === "error" || m.type() === "warning") && log(`page ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log(`page error: ${e.message}`));
  await page.goto(url);
  await page.evaluate(() => window.tunable.ready);
  return page;
}

const setImage = (page, pic) =>
  page.evaluate(
    async ([data, w, h]) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      await window.tunable.setImage(bytes, w, h);
    },
    [b64(rgba(pic)), pic.width, pic.height],
  );

// Moves the level; returns the milliseconds until its output was ready.
const setLevel = (page, alpha) =>
  page.evaluate(async (a) => {
    const t = performance.now();
    await window.tunable.setLevel(a);
    return performance.now() - t;
  }, alpha);

const output = async (page) => {
  const o = await page.evaluate(async () => {
    const { data, width, height, alpha } = await window.tunable.output();
    let s = "";
    for (let i = 0; i < data.length; i += 0x8000) s += String.fromCharCode(...data.subarray(i, i + 0x8000));
    return { data: btoa(s), width, height, alpha };
  });
  return { ...o, data: new Uint8Array(Buffer.from(o.data, "base64")) };
};

const stats = (page) => page.evaluate(() => window.tunable.stats());

// The time from a level change to its output at each size: the picture's first run (its
// buffers made) is not counted, then `changes` level changes (their median is printed).
async function timings(page, sizes, changes, what) {
  const rows = [];
  for (const n of sizes) {
    await setImage(page, picture(n, n, 25, 7 + n));
    const ms = [];
    for (let i = 0; i < changes; i++) ms.push(await setLevel(page, 0.3 + (0.6 * (i + 1)) / changes));
    ms.sort((x, y) => x - y);
    rows.push(`${n}x${n}: ${ms[(ms.length - 1) >> 1].toFixed(0)} ms (${ms.map((m) => m.toFixed(0)).join(", ")})`);
    log(`timing ${what} ${rows[rows.length - 1]}`);
  }
  return rows;
}

const sizesOf = (v, d) => (v ?? d).split(/[ ,]+/).filter(Boolean).map(Number);

async function main() {
  mkdirSync(OUT, { recursive: true });
  if (!existsSync(join(ROOT, "tools/web/pkg/tunable_bg.wasm"))) {
    throw new Error("tools/web/pkg/ is missing: run bash tools/web/build.sh first");
  }
  // The pictures: one of 96x64, a second of an odd size (mirror padding to even), sigma 30.
  const pics = { "a.png": picture(96, 64, 30, 1), "b.png": picture(75, 49, 30, 2) };
  for (const [f, p] of Object.entries(pics)) writeFileSync(join(OUT, f), encodePng(p));
  const bin = tunableBin();
  const files = Object.keys(pics).map((f) => join(OUT, f));
  const refs = {};
  for (const level of LEVELS) refs[level] = reference(bin, files, level);
  log(`native reference outputs at levels ${LEVELS.join(", ")}`);

  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}/tools/web/index.html`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
  });
  const timing = [];
  try {
    log(`chromium ${browser.version()} at ${base}`);
    const page = await openPage(browser, base);
    let s = await stats(page);
    log(`adapter: ${s.adapter} (backend ${s.backend})`);
    check(s.backend === "webgpu", `the page runs on WebGPU, not the CPU fallback (${await page.evaluate(() => window.tunable.fallback()) ?? "no fallback"})`);
    if (s.backend !== "webgpu") throw new Error("no WebGPU adapter in the browser");

    // Three levels on one picture against the native reference.
    await setImage(page, pics["a.png"]);
    let first = null;
    for (const level of LEVELS) {
      const ms = await setLevel(page, level);
      const out = await output(page);
      const d = compare(out.data, refs[level][files[0]]);
      check(
        out.width === 96 && out.height === 64 && d.max <= TOLERANCE,
        `96x64 at level ${level}: max diff ${d.max}/255 (mean ${d.mean.toFixed(4)}, ${d.over1} values > 1) vs the native reference, ${ms.toFixed(0)} ms`,
      );
      const now = await stats(page);
      if (!first) first = now;
      else {
        check(
          now.pipelines === first.pipelines && now.buffers === first.buffers && now.weightUploads === first.weightUploads,
          `level change: pipelines ${first.pipelines} -> ${now.pipelines}, buffers ${first.buffers} -> ${now.buffers}, weight bytes ${first.weightUploads} -> ${now.weightUploads}`,
        );
      }
    }
    const before = await stats(page);
    check(before.levelWrites >= 1 + LEVELS.length, `levelWrites counts the runs (${before.levelWrites})`);

    // A real drag of the slider: runs coalesce (at most one in flight, the last value wins),
    // and nothing is created or uploaded.
    const box = await page.locator("#level").boundingBox();
    const y = box.y + box.height / 2;
    const [lo, hi] = await page.evaluate(() => ["min", "max"].map((k) => Number(document.getElementById("level")[k])));
    const x = (a) => box.x + (box.width * (a - lo)) / (hi - lo);
    await page.mouse.move(x(0.1), y);
    await page.mouse.down();
    await page.mouse.move(x(0.8), y, { steps: 12 });
    await page.mouse.up();
    const dragged = Number(await page.locator("#level").inputValue());
    const out = await output(page);
    const after = await stats(page);
    const runs = after.levelWrites - before.levelWrites;
    check(
      after.pipelines === before.pipelines && after.buffers === before.buffers && after.weightUploads === before.weightUploads,
      `dragging the slider to ${dragged}: ${runs} runs for 13 input events, +${after.pipelines - before.pipelines} pipelines, +${after.buffers - before.buffers} buffers, +${after.weightUploads - before.weightUploads} weight bytes, ${(after.otherBytes - before.otherBytes) / Math.max(runs, 1)} bytes written per run besides the picture`,
    );
    check(runs >= 1 && runs < 13, `the drag's runs were coalesced (${runs} of 13)`);
    check(Math.abs(out.alpha - dragged) < 1e-6, `the output is at the slider's last value (${out.alpha})`);
    await page.screenshot({ path: join(OUT, "page.png") });
    log(`screenshot of the page after the drag: ${join(OUT, "page.png")}`);

    // A second picture of another, odd size.
    await setImage(page, pics["b.png"]);
    await setLevel(page, LEVELS[1]);
    const outB = await output(page);
    const dB = compare(outB.data, refs[LEVELS[1]][files[1]]);
    check(
      outB.width === 75 && outB.height === 49 && dB.max <= TOLERANCE,
      `75x49 at level ${LEVELS[1]}: max diff ${dB.max}/255 (mean ${dB.mean.toFixed(4)}) vs the native reference`,
    );

    // "estimate" on the first picture (noise sigma 30).
    await setImage(page, pics["a.png"]);
    const e = await page.evaluate(() => window.tunable.estimate());
    const knob = Number(await page.locator("#level").inputValue());
    check(
      Math.abs(e.sigma - 30) < 6 && Math.abs(knob - e.alpha) < 1e-3,
      `estimate: sigma ${e.sigma.toFixed(1)} on noise of sigma 30, knob set to ${knob}`,
    );

    // Timings (SwiftShader is a software adapter: a correctness platform, not a speed figure).
    const changes = Number(process.env.TUNABLE_WEB_TIMING_CHANGES || 1);
    const gpuSizes = sizesOf(process.env.TUNABLE_WEB_GPU_SIZES, "256");
    timing.push(...(await timings(page, gpuSizes, changes, "WebGPU")).map((r) => `WebGPU (${s.adapter}): ${r}`));
    await page.close();

    // The CPU fallback (?cpu=1): said on the page, same output, and its time.
    const cpu = await openPage(browser, `${base}?cpu=1`);
    const c = await stats(cpu);
    check(c.backend === "cpu", `?cpu=1 runs the CPU fallback (${c.adapter})`);
    const warn = await cpu.locator("#warn").textContent();
    check(/WebGPU is not available/.test(warn), `the page says the CPU fallback runs: "${warn.slice(0, 70)}..."`);
    await setImage(cpu, pics["a.png"]);
    await setLevel(cpu, LEVELS[1]);
    const dc = compare((await output(cpu)).data, refs[LEVELS[1]][files[0]]);
    check(dc.max <= TOLERANCE, `CPU fallback, 96x64 at level ${LEVELS[1]}: max diff ${dc.max}/255 vs the native reference`);

    // A person's ways in and out (on the CPU page: quicker): the file picker, a drop, the
    // download button, each against the same reference.
    const waitPicture = (w, h) =>
      cpu.waitForFunction(([w, h]) => window.tunable.picture()?.width === w && window.tunable.picture()?.height === h, [w, h]);
    await cpu.setInputFiles("#file", files[1]);
    await waitPicture(75, 49);
    const dp = compare((await output(cpu)).data, refs[LEVELS[1]][files[1]]);
    check(dp.max <= TOLERANCE, `a picture opened with the file picker: max diff ${dp.max}/255 vs the native reference`);
    await cpu.evaluate(async (data) => {
      const file = new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], "a.png", { type: "image/png" });
      const dt = new DataTransfer();
      dt.items.add(file);
      document.getElementById("stage").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, readFileSync(files[0]).toString("base64"));
    await waitPicture(96, 64);
    const shown = await output(cpu);
    const dd = compare(shown.data, refs[LEVELS[1]][files[0]]);
    check(dd.max <= TOLERANCE, `a dropped picture: max diff ${dd.max}/255 vs the native reference`);
    const [download] = await Promise.all([cpu.waitForEvent("download"), cpu.click("#download")]);
    const saved = join(OUT, "download.png");
    await download.saveAs(saved);
    const png = decodePng(readFileSync(saved));
    const same = png.width === 96 && png.height === 64 && compare(shown.data, png).max === 0;
    check(same, `"download PNG" saves the output (${download.suggestedFilename()}, ${png.width}x${png.height})`);

    const cpuSizes = sizesOf(process.env.TUNABLE_WEB_CPU_SIZES, "256");
    timing.push(...(await timings(cpu, cpuSizes, changes, "CPU fallback")).map((r) => `CPU fallback (wasm, one thread): ${r}`));
  } finally {
    await browser.close();
    server.close();
  }
  for (const t of timing) console.log(`web-test timing: ${t}`);
  log(failures ? `${failures} check(s) FAILED` : "all checks passed");
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.error(`web-test: ${e.stack || e}`);
  process.exit(1);
});
