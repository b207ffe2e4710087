"""PSNR against alpha at each noise level, on the 32 validation images, and the best alpha per sigma.

    python tools/calibrate.py --ckpt runs/ftn/model.pt [--base runs/base/model.pt] -o runs/calib/ftn.json \
        [--dedicated runs/s40/model.pt runs/s60/model.pt runs/s80/model.pt]

Protocol: the last 32 ids of the sorted CBSD432 list, center crops (--crop, default 192; 0 = full
images, one at a time), noise N(0, sigma^2) on the 0..255 scale with a fixed seed per sigma (the same
noise for every alpha; noisy input not clipped, or with --noise 8bit clipped to 0..255 and rounded as
in a saved photo), output clipped to [0,255] and rounded, PSNR over all
three channels per image, mean over images. The best alpha per sigma is the grid argmax refined by a
parabola through its neighbours, then made non-decreasing in sigma (pool-adjacent-violators);
`calibration` = [[sigma, alpha], ...] goes to levels[0].calibration via export.py --calib.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nets  # noqa: E402
from train import ROOT, load_rgb, split_ids  # noqa: E402


def load_val(data, crop, n):
    _, val = split_ids(data)
    out = []
    for p in val[:n]:
        a = load_rgb(p)
        if crop:
            h, w = a.shape[:2]
            y, x = (h - crop) // 2, (w - crop) // 2
            a = a[y:y + crop, x:x + crop]
        else:
            a = a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2]
        out.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float())
    return out  # list of [3,H,W] float 0..255


def psnr_batch(model, clean, noisy, alpha, dev, chunk):
    """clean/noisy: lists of [3,H,W] 0..255 tensors (same size when batched). Returns list of PSNRs."""
    res = []
    for i in range(0, len(clean), chunk):
        c = torch.stack(clean[i:i + chunk]).to(dev)
        n = torch.stack(noisy[i:i + chunk]).to(dev)
        out = model(n / 255.0) if alpha is None else model(n / 255.0, alpha)
        out = (out * 255.0).clamp(0, 255).round()
        mse = (out - c).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        res += (10 * torch.log10(255.0 ** 2 / mse)).tolist()
    return res


def isotonic(y):
    """Pool-adjacent-violators: the closest non-decreasing sequence (least squares)."""
    blocks = [[v, 1] for v in y]
    out = []
    for b in blocks:
        out.append(b)
        while len(out) > 1 and out[-2][0] > out[-1][0]:
            v2, n2 = out.pop()
            v1, n1 = out.pop()
            out.append([(v1 * n1 + v2 * n2) / (n1 + n2), n1 + n2])
    res = []
    for v, n in out:
        res += [v] * n
    return res


def refine(alphas, row):
    j = int(np.argmax(row))
    if 0 < j < len(row) - 1:
        y0, y1, y2 = row[j - 1], row[j], row[j + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            off = 0.5 * (y0 - y2) / den
            step = alphas[j + 1] - alphas[j]
            return float(np.clip(alphas[j] + off * step, alphas[j - 1], alphas[j + 1]))
    return float(alphas[j])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="family model.pt (or ckpt.pt)")
    ap.add_argument("--base")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--dedicated", nargs="*", default=[], help="from-scratch model.pt files (scored at their sigma)")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets"))
    ap.add_argument("--sigmas", default="20:80:5", help="start:stop:step (inclusive)")
    ap.add_argument("--alpha-step", type=float, default=0.05)
    ap.add_argument("--alpha-max", type=float, default=1.0)
    ap.add_argument("--crop", type=int, default=192, help="center crop size; 0 = full images")
    ap.add_argument("--nval", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--noise", choices=["float", "8bit"], default="float",
                    help="8bit: the noisy input clipped to 0..255 and rounded (what users' photos hold)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    t0 = time.time()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # scoring in full f32
        torch.backends.cudnn.allow_tf32 = False
    s0, s1, ss = (float(v) for v in a.sigmas.split(":"))
    sigmas = [round(s0 + i * ss, 6) for i in range(int(round((s1 - s0) / ss)) + 1)]
    n_al = int(round(a.alpha_max / a.alpha_step))
    alphas = [round(i * a.alpha_step, 6) for i in range(n_al + 1)]
    model, cfg = nets.load_model(a.ckpt, a.base)
    model = model.to(dev).eval()
    clean = load_val(a.data, a.crop, a.nval)
    chunk = len(clean) if a.crop else 1

    def noisy_for(sigma):
        g = torch.Generator().manual_seed(a.seed + int(round(sigma * 100)))
        noisy = [c + sigma * torch.randn(c.shape, generator=g) for c in clean]
        if a.noise == "8bit":
            noisy = [n.clamp(0, 255).round() for n in noisy]
        return noisy

    table = []
    with torch.no_grad():
        for s in sigmas:
            nz = noisy_for(s)
            row = [float(np.mean(psnr_batch(model, clean, nz, al, dev, chunk))) for al in alphas]
            table.append(row)
            print(f"[calib {cfg['family']}] sigma {s:5.1f}: best alpha {alphas[int(np.argmax(row))]:.2f} "
                  f"psnr {max(row):.3f} (alpha 0: {row[0]:.3f}, alpha 1: {row[-1] if alphas[-1] == 1.0 else float('nan'):.3f})",
                  flush=True)
        dedicated = {}
        for p in a.dedicated:
            m, c = nets.load_model(p)
            m = m.to(dev).eval()
            s = float(c["sigma"])
            dedicated[str(s)] = {"ckpt": p, "psnr": float(np.mean(psnr_batch(m, clean, noisy_for(s), None, dev, chunk)))}
    raw = [refine(alphas, row) for row in table]
    mono = [float(np.clip(v, 0.0, a.alpha_max)) for v in isotonic(raw)]
    best_psnr = [max(r) for r in table]
    res = {"family": cfg["family"], "ckpt": a.ckpt, "base": a.base or cfg.get("base"), "nval": len(clean), "crop": a.crop, "noise": a.noise,
           "seed": a.seed, "sigmas": sigmas, "alphas": alphas, "psnr": table,
           "best_alpha_raw": raw, "best_psnr": best_psnr,
           "calibration": [[s, round(v, 4)] for s, v in zip(sigmas, mono)],
           "dedicated": dedicated}
    # PSNR at the calibrated alpha (interpolated) for the dedicated sigmas, for the gap table
    gaps = {}
    with torch.no_grad():
        for s_str, d in dedicated.items():
            s = float(s_str)
            al = float(np.interp(s, sigmas, mono))
            p = float(np.mean(psnr_batch(model, clean, noisy_for(s), al, dev, chunk)))
            gaps[s_str] = {"alpha": al, "psnr_family": p, "psnr_dedicated": d["psnr"], "gap": p - d["psnr"]}
            print(f"[calib {cfg['family']}] sigma {s:g}: family {p:.3f} at alpha {al:.3f} vs dedicated {d['psnr']:.3f} "
                  f"(gap {p - d['psnr']:+.3f})", flush=True)
    res["gaps"] = gaps
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"[calib {cfg['family']}] wrote {a.out} in {time.time() - t0:.0f} s; calibration {res['calibration']}", flush=True)


if __name__ == "__main__":
    main()
