"""CBM3D / BM3D on exactly the noisy inputs `tunable eval` makes, for the README's 8-bit table.

    .venv/bin/pip install bm3d                  # not a dependency of the project
    .venv/bin/python tools/baseline_bm3d.py --data ../shared/datasets/CBSD68 --limit 16 \
        --sigma 5,10,15,25,35,50,75 -o runs/bm3d-cbsd68.json

The noise is `src/noise.rs` re-implemented (SplitMix64 driving Box-Muller, seed + 1000 * i +
round(sigma) for the i-th image in sorted order, values in planar channel order, f32 arithmetic),
then clipped and rounded to 8 bits as `tunable eval --noise 8bit` does; `--save-noisy DIR` of
`tunable eval` writes the same pictures, and `--check DIR` here compares them byte for byte.
BM3D is told the true sigma (profile 'np', the package default); its output is clipped and
rounded, and PSNR is taken over all channels, as `tunable eval` scores. Images run in parallel
(--jobs processes): the package is single-threaded and takes a minute or more per color image.
"""
import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def splitmix_normals(seed, n):
    """The first n values of tunable's noise::Rng::normal() for this seed (float64)."""
    with np.errstate(over="ignore"):
        k = np.arange(1, 2 * n + 1, dtype=np.uint64)
        z = np.uint64(seed) + k * GAMMA
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
    u = ((z >> np.uint64(11)).astype(np.float64) + 1.0) / float(1 << 53)
    u1, u2 = u[0::2], u[1::2]
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def list_images(folder):
    exts = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(exts))


def load_planar(path):
    """[C, H, W] float32 on 0..255 (1 channel for gray files, 3 otherwise), as tunable reads 8-bit files."""
    im = Image.open(path)
    gray = im.mode in ("L", "LA", "I;16", "I")
    a = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32)
    return a[None] if gray else a.transpose(2, 0, 1)


def noisy_8bit(clean, sigma, seed):
    n = splitmix_normals(seed, clean.size).astype(np.float32).reshape(clean.shape)
    v = clean + np.float32(sigma) * n
    return np.floor(np.clip(v, 0, 255) + np.float32(0.5))  # Rust's round: half away from zero


def psnr(ref, test):
    mse = np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0 ** 2 / mse)


def one(job):
    import bm3d
    path, i, sigma, seed = job
    clean = load_planar(path)
    noisy = noisy_8bit(clean, sigma, seed + 1000 * i + int(round(sigma)))
    t = time.time()
    z = noisy.transpose(1, 2, 0) / 255.0
    if clean.shape[0] == 3:
        y = bm3d.bm3d_rgb(z, sigma / 255.0)
    else:
        y = bm3d.bm3d(z[:, :, 0], sigma / 255.0)[:, :, None]
    y = np.clip(np.round(y * 255.0), 0, 255).transpose(2, 0, 1)
    return {"image": os.path.basename(path), "sigma": sigma, "psnr": psnr(clean, y),
            "psnr_input": psnr(clean, noisy), "seconds": time.time() - t}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--sigma", default="5,10,15,25,35,50,75")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--check", help="a folder of `tunable eval --save-noisy` pictures to compare with")
    ap.add_argument("-o", "--out")
    a = ap.parse_args()
    files = list_images(a.data)[: a.limit]
    sigmas = [float(s) for s in a.sigma.split(",")]
    if a.check:
        bad = 0
        for s in sigmas:
            for i, p in enumerate(files):
                mine = noisy_8bit(load_planar(p), s, a.seed + 1000 * i + int(round(s)))
                stem = os.path.splitext(os.path.basename(p))[0]
                theirs = load_planar(os.path.join(a.check, f"sigma{s:g}", stem + ".png"))
                bad += int(not np.array_equal(mine, theirs))
        print(f"check: {bad} of {len(files) * len(sigmas)} noisy pictures differ from {a.check}")
        raise SystemExit(1 if bad else 0)
    jobs = [(p, i, s, a.seed) for s in sigmas for i, p in enumerate(files)]
    rows = []
    with ProcessPoolExecutor(a.jobs) as ex:
        for r in ex.map(one, jobs):
            rows.append(r)
            print(f"{r['image']} sigma {r['sigma']:g}: {r['psnr']:.2f} dB (input {r['psnr_input']:.2f}) "
                  f"in {r['seconds']:.0f} s", flush=True)
    print("| sigma | images | input PSNR | BM3D PSNR |\n|---|---|---|---|")
    table = []
    for s in sigmas:
        rs = [r for r in rows if r["sigma"] == s]
        row = {"sigma": s, "images": len(rs), "psnr": float(np.mean([r["psnr"] for r in rs])),
               "psnr_input": float(np.mean([r["psnr_input"] for r in rs]))}
        table.append(row)
        print(f"| {s:g} | {row['images']} | {row['psnr_input']:.2f} | {row['psnr']:.2f} |")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"data": a.data, "files": [os.path.basename(p) for p in files], "table": table,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
