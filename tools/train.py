"""Color Gaussian denoising training, FTN-paper protocol (CBSD432, start sigma 20, end sigma 80).

    # base (start level) and dedicated from-scratch models
    python tools/train.py --name base --family base --sigma 20 --seconds 200
    python tools/train.py --name s40  --family base --sigma 40 --seconds 200
    # families from the base, at the end level (alpha = 1)
    python tools/train.py --name ftn --family ftn --sigma 80 --base runs/base/model.pt --seconds 175

Data: ids from <data>/CBSD432_list.txt (lines like "BSDS500/train/100075.jpg"), sorted; the LAST 32 are
the validation split (calibration), the other 400 train. Random crops (--patch), random flips and
transposes (the 8 dihedral transforms, per sample), noise N(0, (sigma/255)^2) added on the fly (the
noisy input is not clipped). Loss: L2 (MSE, what PSNR measures) by default, --loss l1 optional. Adam,
lr --lr with a 2 % linear warm-up then cosine to --lr-min over the run; the run length is --steps or
--seconds of training time (then the schedule follows the elapsed fraction).

Joint recipe (the default model, HyperRes's form W(s) = A + alpha(s) B, i.e. a DNI file whose two
ends are trained together over the whole range instead of in two stages):

    python tools/train.py --name joint --family dni --recipe joint --sigma 75 --noise 8bit \
        --init weights/denoise-dni-color.safetensors --loss logl2 --seconds 7200

Every step draws --groups noise levels (one per group of batch/groups patches): sigma = 0 with
probability 0.1, else sigma = 75 u^2 with u uniform (about 58 % of the draws under sigma 25, where
users' photos are). alpha(sigma) is the piecewise-linear JOINT_CALIBRATION table below (about
sqrt(sigma/75): weight space is spent where the behaviour changes fastest, near a clean photo), and
export.py writes the same table into the file, so training and engine map sigma identically.
--noise 8bit clips and rounds the noisy input to 0..255 integers, as in any saved photo; --noise mix
draws 8-bit or float noise per group with even odds. --gray trains
on Train400 (1 channel); --init FILE.safetensors starts from an exported plain or DNI model (a color
file is converted to gray by summing the head over colors and averaging the tail, which is exactly
the color network run on a gray image replicated to RGB).

Dedicated models at one level, starting from the network the knob runs there (an upper bound for the
knob at that level; same architecture and data):

    python tools/train.py --name s25 --family base --sigma 25 --noise 8bit \
        --init weights/denoise-color.safetensors --init-level 25 --loss logl2 --lr 2e-4 --seconds 900

Writes runs/<name>/config.json, log.csv (step, elapsed_s, lr, loss, psnr_train), ckpt.pt (with
optimizer state, every --ckpt-every seconds and at the end; resumed from if present) and, at the
end, model.pt (weights only: the full backbone for --family base, only the trained family
parameters otherwise; nets.load_model(model.pt, base) rebuilds the model).
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

T_PROCESS = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import nets  # noqa: E402

NVAL = 32
# sigma -> alpha for the joint recipe (about sqrt(sigma / 75)); export.py writes it into the file.
JOINT_CALIBRATION = [[s, round(math.sqrt(s / 75.0), 4)] for s in
                     (0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12.5, 15, 17.5, 20, 25, 30, 35, 40, 45, 50, 55, 60, 67.5, 75)]


# ----------------------------------------------------------------------------------- data

def split_ids(data):
    """(train paths, val paths) from <data>/CBSD432_list.txt: sorted, last 32 = validation."""
    with open(os.path.join(data, "CBSD432_list.txt")) as f:
        rel = sorted({ln.strip() for ln in f if ln.strip()}, key=lambda p: os.path.basename(p))
    paths = [os.path.join(data, r) for r in rel]
    return paths[:-NVAL], paths[-NVAL:]


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def gray_train_paths(data):
    """Train400 (the DnCNN gray training set), sorted."""
    folder = os.path.join(data, "Train400")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".png"))


def load_train_tensor(paths, device, gray=False):
    """All images as one uint8 tensor [N, C, H, W] (portrait images transposed to landscape, all cropped
    to the smallest size: 321x481 for BSDS500)."""
    imgs = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("L"), dtype=np.uint8)[:, :, None] if gray else load_rgb(p)
        if a.shape[0] > a.shape[1]:
            a = a.transpose(1, 0, 2)
        imgs.append(a)
    h = min(a.shape[0] for a in imgs)
    w = min(a.shape[1] for a in imgs)
    arr = np.stack([a[:h, :w] for a in imgs]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device)


def random_batch(data, batch, patch, gen):
    """Random crops with per-sample dihedral augmentation, as float [0,1] on data's device."""
    n, c, h, w = data.shape
    dev = data.device
    idx = torch.randint(0, n, (batch,), device=dev, generator=gen)
    y0 = torch.randint(0, h - patch + 1, (batch,), device=dev, generator=gen)
    x0 = torch.randint(0, w - patch + 1, (batch,), device=dev, generator=gen)
    ar = torch.arange(patch, device=dev)
    ys = (y0[:, None] + ar)[:, :, None]                       # B,P,1
    xs = (x0[:, None] + ar)[:, None, :]                       # B,1,P
    crop = data.permute(0, 2, 3, 1)[idx[:, None, None], ys, xs]  # B,P,P,C
    x = crop.permute(0, 3, 1, 2).float().div_(255.0)
    flips = torch.randint(0, 2, (3, batch, 1, 1, 1), device=dev, generator=gen).bool()
    x = torch.where(flips[0], x.flip(3), x)
    x = torch.where(flips[1], x.flip(2), x)
    x = torch.where(flips[2], x.transpose(2, 3), x)
    return x.contiguous()


# ----------------------------------------------------------------------------------- training

def build(cfg, device):
    arch = dict(channels=cfg["channels"], blocks=cfg["blocks"], in_ch=cfg["in_ch"])
    if cfg.get("init"):
        mix = None if cfg.get("init_level") is None else file_alpha(cfg["init"], cfg["init_level"])
        return nets.from_tunable_file(cfg["init"], cfg["family"], in_ch=cfg["in_ch"], mix_alpha=mix).to(device)
    if cfg["family"] == "base":
        return nets.Backbone(**arch).to(device)
    base, bcfg = nets.load_model(cfg["base"], map_location="cpu")
    for k in ("channels", "blocks"):
        if bcfg[k] != cfg[k]:
            raise SystemExit(f"--{k} {cfg[k]} does not match the base ({bcfg[k]})")
    return nets.make_family(cfg["family"], base, adafm_k=cfg["adafm_k"], ftn_groups=cfg["ftn_groups"]).to(device)


def file_alpha(path, sigma):
    """alpha for sigma through an exported file's calibration (the engine's Level::sigma)."""
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        spec = json.loads(f.metadata()["tunable"])
    xs, ys = zip(*spec["levels"][0]["calibration"])
    return float(np.interp(sigma, xs, ys))


def whole_state(cfg):
    """Checkpoints hold every parameter (not only the family's) for base models and the joint recipe."""
    return cfg["family"] == "base" or cfg.get("recipe") == "joint"


def model_state(model, cfg):
    return {k: v.detach().cpu() for k, v in model.state_dict().items()} if whole_state(cfg) else model.trainable_state()


def draw_sigmas(n, gen, dev, top):
    """Noise levels for the joint recipe: 0 with probability 0.1, else top * u^2."""
    u = torch.rand(n, device=dev, generator=gen)
    zero = torch.rand(n, device=dev, generator=gen) < 0.1
    return torch.where(zero, torch.zeros_like(u), top * u * u)


def add_noise(clean, sigma, gen, kind):
    """clean in [0,1]; sigma on the 0..255 scale (a number or one per sample). '8bit' clips and rounds
    the noisy picture to 0..255 integers as any saved photo is; 'float' leaves it as it is; 'mix' is
    either with even odds (float noise keeps the paper protocol's unclipped inputs in the training set)."""
    if kind == "mix":
        pick = torch.rand((), device=clean.device, generator=gen).item() < 0.5
        kind = "8bit" if pick else "float"
    sig = torch.as_tensor(sigma, device=clean.device, dtype=clean.dtype).reshape(-1, 1, 1, 1) / 255.0
    noisy = clean + sig * torch.randn(clean.shape, device=clean.device, generator=gen)
    if kind == "8bit":
        noisy = (noisy * 255.0).clamp_(0, 255).round_().div_(255.0)
    return noisy


def alpha_of(sigma):
    xs, ys = zip(*JOINT_CALIBRATION)
    return float(np.interp(sigma, xs, ys))


def lr_at(frac, cfg):
    warm = 0.02
    if frac < warm:
        return cfg["lr"] * max(frac / warm, 0.01)
    f = min((frac - warm) / (1 - warm), 1.0)
    return cfg["lr_min"] + 0.5 * (cfg["lr"] - cfg["lr_min"]) * (1 + math.cos(math.pi * f))


# log(MSE + eps): eps is the MSE of a 55 dB picture, so a clean photo is not pushed past that.
LOG_EPS = 10 ** -5.5


def joint_step(model, clean, gen, a):
    """One joint-recipe batch: groups of patches, each at its own sigma and alpha(sigma).
    Returns (mean MSE for the log, loss)."""
    sigmas = draw_sigmas(a.groups, gen, clean.device, a.sigma).tolist()
    per = a.batch // a.groups
    mses, losses = [], []
    for g, s in enumerate(sigmas):
        c = clean[g * per:(g + 1) * per]
        out = model(add_noise(c, s, gen, a.noise), alpha_of(s))
        m = (out - c).pow(2).flatten(1).mean(1)
        mses.append(m.mean())
        losses.append(torch.log(m + LOG_EPS).mean() if a.loss == "logl2" else m.mean())
    return torch.stack(mses).mean(), torch.stack(losses).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--family", required=True, choices=["base", "dni", "adafm", "ftn", "cfsnet"])
    ap.add_argument("--sigma", type=float, required=True, help="noise level on the 0..255 scale")
    ap.add_argument("--base", help="base model.pt/ckpt.pt (families only)")
    ap.add_argument("--channels", type=int, default=48)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--adafm-k", type=int, default=3, choices=[1, 3])
    ap.add_argument("--ftn-groups", type=int, default=None, help="default gcd(Cin, 16)")
    ap.add_argument("--ftn-reg", type=float, default=0.0, help="weight of FTN smoothness regulariser (optional)")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0, help="training-time budget (excludes start-up)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--loss", choices=["l2", "l1", "logl2"], default="l2",
                    help="logl2: mean over groups of log(MSE), so every noise level counts in dB, not in MSE")
    ap.add_argument("--recipe", choices=["two-stage", "joint"], default="two-stage",
                    help="joint: dni only; both ends trained together over sigma 0..--sigma")
    ap.add_argument("--noise", choices=["float", "8bit", "mix"], default="float",
                    help="mix: each group (or batch) 8-bit or float with even odds")
    ap.add_argument("--groups", type=int, default=4, help="joint: noise levels per batch")
    ap.add_argument("--init", help="start from an exported .safetensors (plain or dni) instead of --base")
    ap.add_argument("--init-level", type=float, help="family base from a DNI --init: start from the network it "
                    "runs at this sigma (through the file's calibration), for a dedicated model at that level")
    ap.add_argument("--gray", action="store_true", help="train on Train400 (gray) instead of CBSD432")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=float, default=60.0, help="seconds")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets"))
    ap.add_argument("--runs", default=os.path.join(ROOT, "runs"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    if (a.steps > 0) == (a.seconds > 0):
        raise SystemExit("give exactly one of --steps / --seconds")
    if a.family != "base" and not (a.base or a.init):
        raise SystemExit("--base (or --init) is required for a family")
    if a.recipe == "joint" and (a.family != "dni" or a.batch % a.groups):
        raise SystemExit("--recipe joint needs --family dni and --batch a multiple of --groups")
    if a.patch % 2:
        raise SystemExit("--patch must be even")
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    cfg = {k: getattr(a, k) for k in ("name", "family", "sigma", "base", "channels", "blocks", "adafm_k", "ftn_groups",
                                      "ftn_reg", "steps", "seconds", "batch", "patch", "lr", "lr_min", "loss", "seed",
                                      "recipe", "noise", "groups", "init", "gray")}
    if a.init_level is not None:  # only recorded when given, so older checkpoints still resume
        if a.family != "base" or not a.init:
            raise SystemExit("--init-level needs --family base and a DNI --init file")
        cfg["init_level"] = a.init_level
    cfg["in_ch"] = 1 if a.gray else 3
    if a.recipe == "joint":
        cfg["calibration"] = JOINT_CALIBRATION
    rdir = os.path.join(a.runs, a.name)
    os.makedirs(rdir, exist_ok=True)
    ck_path = os.path.join(rdir, "ckpt.pt")

    torch.manual_seed(a.seed)
    model = build(cfg, dev)
    if a.recipe == "joint":
        for p in model.parameters():
            p.requires_grad_(True)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr)
    step, elapsed = 0, 0.0
    if os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        old = {k: v for k, v in ck["config"].items() if k not in ("steps", "seconds", "base")}
        new = {k: v for k, v in cfg.items() if k not in ("steps", "seconds", "base")}
        if old != new:
            raise SystemExit(f"{ck_path} was written with another config: {old} vs {new}; delete it or use another --name")
        if whole_state(cfg):
            model.load_state_dict(ck["state"])
        else:
            model.load_trainable_state(ck["state"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        print(f"[{a.name}] resumed from {ck_path} at step {step}, {elapsed:.0f} s trained", flush=True)
    with open(os.path.join(rdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    train_paths = gray_train_paths(a.data) if a.gray else split_ids(a.data)[0]
    t0 = time.time()
    data = load_train_tensor(train_paths, dev, gray=a.gray)
    print(f"[{a.name}] {a.family} sigma {a.sigma:g} on {dev}: {data.shape[0]} images {tuple(data.shape[2:])} loaded in "
          f"{time.time() - t0:.1f} s; {sum(p.numel() for p in params)} trainable params; startup "
          f"{time.time() - T_PROCESS:.1f} s", flush=True)
    gen = torch.Generator(device=dev).manual_seed(a.seed * 1000003 + step)
    alpha = 1.0  # families train at the end level

    def save(final):
        st = model_state(model, cfg)
        tmp = ck_path + ".tmp"
        torch.save({"config": cfg, "state": st, "opt": opt.state_dict(), "step": step, "elapsed": elapsed}, tmp)
        os.replace(tmp, ck_path)
        if final:
            torch.save({"config": cfg, "state": st, "step": step, "elapsed": elapsed}, os.path.join(rdir, "model.pt"))

    log_path = os.path.join(rdir, "log.csv")
    new_log = not os.path.exists(log_path)
    logf = open(log_path, "a", newline="")
    log = csv.writer(logf)
    if new_log:
        log.writerow(["step", "elapsed_s", "lr", "loss", "psnr_train"])
    model.train()
    acc, nacc = 0.0, 0
    seg_start = time.time()
    base_elapsed = elapsed
    last_ck = time.time()

    def frac():
        return step / a.steps if a.steps else elapsed / a.seconds

    while frac() < 1.0:
        lr = lr_at(frac(), cfg)
        for gp in opt.param_groups:
            gp["lr"] = lr
        clean = random_batch(data, a.batch, a.patch, gen)
        if a.recipe == "joint":
            mse, loss = joint_step(model, clean, gen, a)
        else:
            noisy = add_noise(clean, a.sigma, gen, a.noise)
            if a.channels_last:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
            out = model(noisy) if a.family == "base" else model(noisy, alpha)
            mse = F.mse_loss(out, clean)
            loss = {"l2": lambda: mse, "l1": lambda: F.l1_loss(out, clean),
                    "logl2": lambda: torch.log(mse + LOG_EPS)}[a.loss]()
        if a.family == "ftn" and a.ftn_reg > 0:
            loss = loss + a.ftn_reg * model.smoothness()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc += mse.detach()
        nacc += 1
        if step % a.log_every == 0 or step == 1:
            m = (acc / nacc).item()
            elapsed = base_elapsed + time.time() - seg_start
            log.writerow([step, f"{elapsed:.1f}", f"{lr:.3g}", f"{m:.6g}", f"{-10 * math.log10(max(m, 1e-12)):.3f}"])
            logf.flush()
            print(f"[{a.name}] step {step} {elapsed:.0f}s lr {lr:.2e} mse {m:.3e} psnr {-10 * math.log10(max(m, 1e-12)):.2f}",
                  flush=True)
            acc, nacc = 0.0, 0
        if a.seconds or step % 10 == 0:
            elapsed = base_elapsed + time.time() - seg_start
        if time.time() - last_ck > a.ckpt_every:
            save(False)
            last_ck = time.time()
    elapsed = base_elapsed + time.time() - seg_start
    save(True)
    logf.close()
    print(f"[{a.name}] done: {step} steps, {elapsed:.0f} s trained, wall {time.time() - T_PROCESS:.0f} s", flush=True)


if __name__ == "__main__":
    main()
