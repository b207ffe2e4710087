"""Writes `tunable` model files (.safetensors + JSON spec in metadata key "tunable", docs/FORMAT.md).

Python API (for make_golden.py / import_ffdnet.py):

    from export import export, build_spec, load_file, run_spec
    spec, tensors = build_spec(model, name="x", task="denoise")          # dict, {name: F32 tensor}
    export(model, "weights/x.safetensors", name="x", task="denoise",
           family=None,            # default: model.family
           levels=None,            # default: model.default_levels()
           calibration=[[20, 0.0], [80, 1.0]])                           # -> levels[0]["calibration"]
    spec, tensors = load_file("weights/x.safetensors")
    y = run_spec(spec, tensors, x, level=[0.3])   # independent PyTorch interpreter of the spec

`model` is any nets.py class with export_graph(g) and default_levels(). Images: run_spec takes and
returns [0,1] NCHW tensors (value_scale is applied by the engine on 0..255 pixel values).

CLI (checkpoint from train.py):

    python tools/export.py --ckpt runs/ftn/model.pt [--base runs/base/model.pt] \
        [--calib runs/calib/ftn.json] -o weights/denoise-ftn.safetensors [--name ...] [--check]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402

FORMAT_VERSION = 1


class Graph:
    """Collects nodes and tensors; enforces unique node and tensor names."""

    def __init__(self):
        self.nodes = []
        self.names = {"input"}
        self.tensors = {}

    def t(self, name, tensor):
        if name in self.tensors:
            raise ValueError(f"duplicate tensor name {name!r}")
        self.tensors[name] = tensor.detach().to("cpu", torch.float32).contiguous().clone()
        return name

    def node(self, name, op, inputs, **fields):
        if name in self.names:
            raise ValueError(f"duplicate node name {name!r}")
        for i in inputs:
            if i not in self.names:
                raise ValueError(f"node {name!r}: unknown input {i!r}")
        self.names.add(name)
        self.nodes.append({"name": name, "op": op, "inputs": list(inputs), **fields})
        return name


def build_spec(model, name, task="denoise", family=None, levels=None, calibration=None, in_channels=None,
               out_channels=None, value_scale=255.0):
    g = Graph()
    out = model.export_graph(g)
    levels = [dict(lv) for lv in (levels if levels is not None else model.default_levels())]
    if calibration is not None:
        if not levels:
            raise ValueError("calibration given but the model has no level axis")
        levels[0]["calibration"] = [[float(u), float(v)] for u, v in sorted(calibration)]
    ch = in_channels or getattr(model, "in_ch", None) or getattr(getattr(model, "base", None), "in_ch", 3)
    spec = {"format_version": FORMAT_VERSION, "name": name, "task": task, "family": family or model.family,
            "in_channels": int(ch), "out_channels": int(out_channels or ch), "value_scale": float(value_scale),
            "levels": levels, "nodes": g.nodes, "output": out}
    for n, t in g.tensors.items():
        if not torch.isfinite(t).all():
            raise ValueError(f"tensor {n!r} has NaN/Inf")
    return spec, g.tensors


def export(model, path, name, task="denoise", family=None, levels=None, calibration=None, **kw):
    spec, tensors = build_spec(model, name, task, family, levels, calibration, **kw)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata={"tunable": json.dumps(spec)})
    return spec


def load_file(path):
    with safe_open(path, "pt") as f:
        spec = json.loads(f.metadata()["tunable"])
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    return spec, tensors


# ----------------------------------------------------------------------------------- reference interpreter

def _ftn(w, m, T):
    g = m["groups"]
    h = F.conv2d(w, T[m["w1"]], T[m["b1"]], groups=g)
    h = F.prelu(h, T[m["prelu"]])
    return F.conv2d(h, T[m["w2"]], T[m["b2"]], groups=g)


def _act(y, node, T, key="prelu"):
    a = node.get("act", "none")
    if a == "relu":
        return F.relu(y)
    if a == "prelu":
        return F.prelu(y, T[node[key]])
    return y


def run_spec(spec, T, x, level=()):
    """Runs a spec on x ([0,1] NCHW) at level (list, one value per axis; not calibrated, not clamped)."""
    level = [float(v) for v in level]
    nodes = {n["name"]: n for n in spec["nodes"]}
    vals = {"input": x}

    def ev(name):
        if name in vals:
            return vals[name]
        n = nodes[name]
        ins = [ev(i) for i in n["inputs"]]
        op = n["op"]
        if op == "conv":
            w, b = T[n["weight"]], (T[n["bias"]] if n.get("bias") else None)
            m = n.get("mod")
            if m is not None:
                if m["type"] == "dni":
                    a = level[m.get("axis", 0)]
                    w = w + a * (T[m["weight_end"]] - w)
                    if b is not None and m.get("bias_end"):
                        b = b + a * (T[m["bias_end"]] - b)
                elif m["type"] == "ftn":
                    a = level[m.get("axis", 0)]
                    w = (1 - a) * w + a * _ftn(w, m, T)
                elif m["type"] == "basis":
                    w0, b0 = w, b
                    for p, d in enumerate(m["deltas"]):
                        row = m["coef"][p]
                        c = row[0] + sum(row[1 + j] * level[j] for j in range(len(row) - 1))
                        w = w + c * T[d]
                        bd = m.get("bias_deltas", [None] * len(m["deltas"]))[p]
                        if bd is not None:
                            b = (b if b is not None else torch.zeros(w.shape[0])) + c * T[bd]
                    del w0, b0
            inp = ins[0]
            nc = n.get("noise_channel")
            if nc is not None:
                v = nc["scale"] * level[nc.get("axis", 0)]
                inp = torch.cat([inp, torch.full_like(inp[:, :1], v)], 1)
            y = F.conv2d(inp, w, b, stride=n.get("stride", 1), padding=w.shape[-1] // 2)
            y = _act(y, n, T)
        elif op == "adafm":
            a = level[n.get("axis", 0)]
            g = T[n["weight"]]
            xin = ins[0]
            y = xin + a * (F.conv2d(xin, g, None, padding=g.shape[-1] // 2, groups=xin.shape[1]) - xin
                           + T[n["bias"]].view(1, -1, 1, 1))
            y = _act(y, n, T)
        elif op == "add":
            gain = n.get("gain", 1.0)
            if isinstance(gain, dict):
                gain = level[gain["axis"]]
            y = _act(ins[0] + gain * ins[1], n, T)
        elif op == "blend":
            c = T[n["coupling"]]
            a = (c[0] + level[n.get("axis", 0)] * c[1]).view(1, -1, 1, 1)
            y = (1 - a) * ins[0] + a * ins[1]
        elif op == "unshuffle":
            y = F.pixel_unshuffle(ins[0], 2)
        elif op == "shuffle":
            y = F.pixel_shuffle(ins[0], 2)
        else:
            raise ValueError(f"node {name!r}: unknown op {op!r}")
        vals[name] = y
        return y

    return ev(spec["output"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="train.py checkpoint (model.pt or ckpt.pt)")
    ap.add_argument("--base", help="base checkpoint for a family (default: path recorded in the ckpt config)")
    ap.add_argument("--family", help="expected family (checked against the checkpoint)")
    ap.add_argument("--calib", help="calib.json from calibrate.py (its 'calibration' list -> levels[0])")
    ap.add_argument("--name", help="model name (default: denoise-<family>-color)")
    ap.add_argument("--task", default="denoise")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--check", action="store_true", help="re-run the file with run_spec and compare")
    a = ap.parse_args()
    model, cfg = nets.load_model(a.ckpt, a.base)
    model.eval()
    fam = model.family
    if a.family and a.family != fam and not (a.family == "base" and fam == "plain"):
        sys.exit(f"checkpoint is family {fam!r}, not {a.family!r}")
    calib = cfg.get("calibration")  # the joint recipe trains with its own table
    if a.calib:
        with open(a.calib) as f:
            calib = json.load(f)["calibration"]
    name = a.name or f"{a.task}-{fam}-{'gray' if cfg.get('in_ch', 3) == 1 else 'color'}"
    spec = export(model, a.out, name, a.task, calibration=calib)
    print(f"wrote {a.out}: family {fam}, {len(spec['nodes'])} nodes, levels {json.dumps(spec['levels'])}")
    if a.check:
        s2, T = load_file(a.out)
        x = torch.rand(1, cfg.get("in_ch", 3), 32, 48, generator=torch.Generator().manual_seed(0))
        worst = 0.0
        with torch.no_grad():
            for al in ([0.0, 0.5, 1.0] if s2["levels"] else [None]):
                ref = model(x, al) if al is not None else model(x)
                got = run_spec(s2, T, x, [al] if al is not None else [])
                worst = max(worst, (ref - got).abs().max().item())
        print(f"check: max |model - run_spec| = {worst:.3g}")
        if worst > 1e-4:
            sys.exit("check failed")


if __name__ == "__main__":
    main()
