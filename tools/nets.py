"""Small, plain PyTorch modules for the `tunable` families.

Images are NCHW float tensors in [0, 1]. Every tunable family keeps the frozen start-level network
as the attribute ``base`` (a :class:`Backbone`), and its own extra parameters elsewhere, so that a
family checkpoint only needs to store ``trainable_state()`` (every key not under ``base.``).

Families (``FAMILIES`` maps the family string used in files/CLIs to the class):

=========  =================  ===========================================  ====================
family     class              forward                                       level axes
=========  =================  ===========================================  ====================
plain      Backbone           ``forward(x)``                                none
dni        DNINet             ``forward(x, alpha)``                         1 (alpha)
adafm      AdaFMNet           ``forward(x, alpha)``                         1 (alpha)
ftn        FTNNet             ``forward(x, alpha)``                         1 (alpha)
cfsnet     CFSNet             ``forward(x, alpha)`` (alpha may leave [0,1]) 1 (alpha, extrapolates)
dynamic    DynamicNet         ``forward(x, alpha)``                         1 (alpha)
basis      BasisDnCNN         ``forward(x, levels)``  levels = [l0, l1]     2
ffdnet     FFDNet             ``forward(x, sigma)``   sigma on 0..255       1 (sigma)
dncnn      DnCNN              ``forward(x)``                                none
=========  =================  ===========================================  ====================

alpha = 0 is exactly the base network for every alpha family. Each class has
``export_graph(g)`` (used by ``export.py``: adds nodes/tensors to a graph builder and returns the
output node name) and ``default_levels()`` (the ``levels`` list of the spec).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(x, w, b=None, groups=1):
    """Zero 'same' padding conv, as the engine does."""
    return F.conv2d(x, w, b, padding=w.shape[-1] // 2, groups=groups)


def alpha_level(extrapolate=False, calibration=None):
    lv = {"name": "alpha", "min": 0.0, "max": 1.0, "extrapolate": bool(extrapolate), "unit": "sigma"}
    if calibration is not None:
        lv["calibration"] = [[float(s), float(a)] for s, a in calibration]
    return [lv]


# ----------------------------------------------------------------------------------- backbone

class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)


class Backbone(nn.Module):
    """AdaFM-Net-style color denoiser: unshuffle(2) -> head -> `blocks` residual blocks -> long skip
    -> tail -> shuffle(2) -> + input. Predicts the noise residual. H and W must be even."""

    family = "plain"

    def __init__(self, channels=48, blocks=8, in_ch=3):
        super().__init__()
        self.channels, self.nblocks, self.in_ch = channels, blocks, in_ch
        self.head = nn.Conv2d(4 * in_ch, channels, 3, padding=1)
        self.body = nn.ModuleList([ResBlock(channels) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, 4 * in_ch, 3, padding=1)
        for blk in self.body:  # gentle init of residual branches for stable from-scratch training
            blk.conv2.weight.data.mul_(0.1)
            blk.conv2.bias.data.zero_()
        self.tail.weight.data.mul_(0.1)  # start close to the identity (residual ~ 0)
        self.tail.bias.data.zero_()

    def arch(self):
        return {"channels": self.channels, "blocks": self.nblocks, "in_ch": self.in_ch}

    def convs(self):
        """(name, nn.Conv2d) for every conv, in order. Names are also node names in exports."""
        out = [("head", self.head)]
        for i, blk in enumerate(self.body):
            out += [(f"body.{i}.conv1", blk.conv1), (f"body.{i}.conv2", blk.conv2)]
        out.append(("tail", self.tail))
        return out

    def run(self, x, wb=None, post=None, block=None):
        """Generic forward. wb(name, module) -> (w, b) overrides weights; post(name, y) -> y is applied
        after every block conv (before ReLU / skip add); block(i, blk, h, c) -> h replaces a block,
        where c(name, module, x) is the conv with overrides applied."""
        def c(name, mod, t):
            w, b = wb(name, mod) if wb is not None else (mod.weight, mod.bias)
            return conv(t, w, b)
        h0 = c("head", self.head, F.pixel_unshuffle(x, 2))
        h = h0
        for i, blk in enumerate(self.body):
            if block is not None:
                h = block(i, blk, h, c)
                continue
            r = c(f"body.{i}.conv1", blk.conv1, h)
            if post is not None:
                r = post(f"body.{i}.conv1", r)
            r = c(f"body.{i}.conv2", blk.conv2, F.relu(r))
            if post is not None:
                r = post(f"body.{i}.conv2", r)
            h = h + r
        h = h + h0
        return x + F.pixel_shuffle(c("tail", self.tail, h), 2)

    def forward(self, x, alpha=None):
        return self.run(x)

    def default_levels(self):
        return []

    # export: hooks let the families reuse the graph
    def export_graph(self, g, conv_fields=None, block=None, post=None):
        """conv_fields(name, module) -> dict of extra conv fields (e.g. mod); block(i, blk, x) -> node
        name replaces a block; post(name, y_node, act) -> node name adds nodes after a block conv."""
        def cnode(name, mod, inp, act="none"):
            fields = {"weight": g.t(name + ".weight", mod.weight), "bias": g.t(name + ".bias", mod.bias),
                      "act": act}
            if conv_fields is not None:
                fields.update(conv_fields(name, mod))
            return g.node(name, "conv", [inp], **fields)
        u = g.node("unshuffle", "unshuffle", ["input"])
        h0 = cnode("head", self.head, u)
        h = h0
        for i, blk in enumerate(self.body):
            if block is not None:
                h = block(i, blk, h, cnode)
                continue
            n1, n2 = f"body.{i}.conv1", f"body.{i}.conv2"
            if post is None:
                r = cnode(n1, blk.conv1, h, "relu")
                r = cnode(n2, blk.conv2, r)
            else:
                r = post(n1, cnode(n1, blk.conv1, h), "relu")
                r = post(n2, cnode(n2, blk.conv2, r), "none")
            h = g.node(f"body.{i}.add", "add", [h, r], act="none")
        h = g.node("skip", "add", [h, h0], act="none")
        t = cnode("tail", self.tail, h)
        s = g.node("shuffle", "shuffle", [t])
        return g.node("out", "add", ["input", s], act="none")


class _Family(nn.Module):
    """Common bits: frozen `base` backbone, trainable_state()."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def arch(self):
        return self.base.arch()

    def freeze_base(self):
        for p in self.base.parameters():
            p.requires_grad_(False)

    def trainable_state(self):
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("base.")}

    def load_trainable_state(self, sd):
        missing, unexpected = self.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("base.")]
        if missing or unexpected:
            raise KeyError(f"family state mismatch: missing {missing}, unexpected {unexpected}")

    def default_levels(self):
        return alpha_level()


# ----------------------------------------------------------------------------------- DNI

class DNINet(_Family):
    """Network interpolation: W(alpha) = W_base + alpha (W_end - W_base), weights and biases.
    `end` starts as a copy of `base` and is fine-tuned entirely at the end level."""

    family = "dni"

    def __init__(self, base):
        super().__init__(base)
        self.end = Backbone(**base.arch())
        self.end.load_state_dict(base.state_dict())

    def forward(self, x, alpha):
        ends = dict(self.end.convs())
        def wb(name, mod):
            e = ends[name]
            return mod.weight + alpha * (e.weight - mod.weight), mod.bias + alpha * (e.bias - mod.bias)
        return self.base.run(x, wb=wb)

    def export_graph(self, g):
        ends = dict(self.end.convs())
        def fields(name, mod):
            e = ends[name]
            return {"mod": {"type": "dni", "axis": 0, "weight_end": g.t(name + ".weight_end", e.weight),
                            "bias_end": g.t(name + ".bias_end", e.bias)}}
        return self.base.export_graph(g, conv_fields=fields)


# ----------------------------------------------------------------------------------- AdaFM

class AdaFM(nn.Module):
    """y = x + alpha * ((g - I) * x + t), depthwise k x k. Stores g itself (initialised to the identity
    kernel) and t (0), so the layer starts as the identity. Export writes g (the file's `weight`)."""

    def __init__(self, c, k=3):
        super().__init__()
        w = torch.zeros(c, 1, k, k)
        w[:, 0, k // 2, k // 2] = 1.0
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x, alpha):
        y = conv(x, self.weight, self.bias, groups=x.shape[1])
        return x + alpha * (y - x)


class AdaFMNet(_Family):
    """AdaFM layer after every conv of every residual block (before the ReLU / the skip add)."""

    family = "adafm"

    def __init__(self, base, k=3):
        super().__init__(base)
        self.k = k
        c = base.channels
        self.fm = nn.ModuleDict({n.replace(".", "_"): AdaFM(c, k) for n, _ in base.convs() if n.startswith("body.")})

    def forward(self, x, alpha):
        return self.base.run(x, post=lambda name, y: self.fm[name.replace(".", "_")](y, alpha))

    def export_graph(self, g):
        def post(name, y, act):
            fm = self.fm[name.replace(".", "_")]
            return g.node(name + ".adafm", "adafm", [y], weight=g.t(name + ".adafm.weight", fm.weight),
                          bias=g.t(name + ".adafm.bias", fm.bias), axis=0, act=act)
        return self.base.export_graph(g, post=post)


# ----------------------------------------------------------------------------------- FTN

class FTN(nn.Module):
    """Filter transition network on a [Cout, Cin, k, k] filter seen as Cout images of Cin channels:
    1x1 group conv -> PReLU (per channel) -> 1x1 group conv; identity at init."""

    def __init__(self, cin, groups=None):
        super().__init__()
        self.groups = groups if groups is not None else math.gcd(cin, 16)
        n = cin // self.groups
        eye = torch.zeros(cin, n, 1, 1)
        eye[torch.arange(cin), torch.arange(cin) % n] = 1.0
        self.w1 = nn.Parameter(eye.clone())
        self.b1 = nn.Parameter(torch.zeros(cin))
        self.prelu = nn.Parameter(torch.ones(cin))
        self.w2 = nn.Parameter(eye.clone())
        self.b2 = nn.Parameter(torch.zeros(cin))

    def forward(self, w):
        h = F.conv2d(w, self.w1, self.b1, groups=self.groups)
        h = F.prelu(h, self.prelu)
        return F.conv2d(h, self.w2, self.b2, groups=self.groups)


class FTNNet(_Family):
    """W(alpha) = (1 - alpha) W + alpha FTN(W) for every conv of the backbone; bias not modulated."""

    family = "ftn"

    def __init__(self, base, groups=None):
        super().__init__(base)
        self.ftn = nn.ModuleDict({n.replace(".", "_"): FTN(m.in_channels, groups) for n, m in base.convs()})

    def forward(self, x, alpha):
        def wb(name, mod):
            w = mod.weight
            return (1 - alpha) * w + alpha * self.ftn[name.replace(".", "_")](w), mod.bias
        return self.base.run(x, wb=wb)

    def smoothness(self):
        """Cheap optional regulariser: mean squared change FTN(W) - W (keeps the transition short)."""
        tot = 0.0
        for n, m in self.base.convs():
            tot = tot + (self.ftn[n.replace(".", "_")](m.weight) - m.weight).pow(2).mean()
        return tot

    def export_graph(self, g):
        def fields(name, mod):
            f = self.ftn[name.replace(".", "_")]
            p = name + ".ftn."
            return {"mod": {"type": "ftn", "axis": 0, "groups": f.groups,
                            "w1": g.t(p + "w1", f.w1), "b1": g.t(p + "b1", f.b1), "prelu": g.t(p + "prelu", f.prelu),
                            "w2": g.t(p + "w2", f.w2), "b2": g.t(p + "b2", f.b2)}}
        return self.base.export_graph(g, conv_fields=fields)


# ----------------------------------------------------------------------------------- CFSNet

class CFSNet(_Family):
    """Per block: main branch r(x) (the base's) and tuning branch t(x) = conv(relu(conv(x))) (initialised
    from the main branch), coupling a = c0 + alpha * c1 per channel (c0 fixed 0, c1 learned, init 1):
    block = x + (1 - a) r(x) + a t(x). alpha may extrapolate beyond [0, 1]."""

    family = "cfsnet"

    def __init__(self, base):
        super().__init__(base)
        c = base.channels
        self.tune = nn.ModuleList()
        for blk in base.body:
            t = ResBlock(c)
            t.load_state_dict(blk.state_dict())
            self.tune.append(t)
        self.register_buffer("c0", torch.zeros(base.nblocks, c))
        self.c1 = nn.Parameter(torch.ones(base.nblocks, c))

    def coupling(self, i):
        return torch.stack([self.c0[i], self.c1[i]])

    def forward(self, x, alpha):
        def block(i, blk, h, c):
            r = c(f"body.{i}.conv2", blk.conv2, F.relu(c(f"body.{i}.conv1", blk.conv1, h)))
            tb = self.tune[i]
            t = conv(F.relu(conv(h, tb.conv1.weight, tb.conv1.bias)), tb.conv2.weight, tb.conv2.bias)
            a = (self.c0[i] + alpha * self.c1[i]).view(1, -1, 1, 1)
            return h + (1 - a) * r + a * t
        return self.base.run(x, block=block)

    def default_levels(self):
        return alpha_level(extrapolate=True)

    def export_graph(self, g):
        def block(i, blk, h, cnode):
            r = cnode(f"body.{i}.conv1", blk.conv1, h, "relu")
            r = cnode(f"body.{i}.conv2", blk.conv2, r)
            tb = self.tune[i]
            t = cnode(f"body.{i}.tune1", tb.conv1, h, "relu")
            t = cnode(f"body.{i}.tune2", tb.conv2, t)
            b = g.node(f"body.{i}.blend", "blend", [r, t], coupling=g.t(f"body.{i}.coupling", self.coupling(i)), axis=0)
            return g.node(f"body.{i}.add", "add", [h, b], act="none")
        return self.base.export_graph(g, block=block)


# ----------------------------------------------------------------------------------- Dynamic-Net

class DynamicNet(_Family):
    """x + alpha * TB(x) after the chosen blocks (default: every block), TB = conv-ReLU-conv-ReLU-conv,
    the last conv zero-initialised."""

    family = "dynamic"

    def __init__(self, base, after=None):
        super().__init__(base)
        self.after = list(range(base.nblocks)) if after is None else list(after)
        c = base.channels
        self.tb = nn.ModuleDict()
        for i in self.after:
            m = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1))
            nn.init.zeros_(m[2].weight)
            nn.init.zeros_(m[2].bias)
            self.tb[str(i)] = m

    def _tb(self, i, h):
        m = self.tb[str(i)]
        return conv(F.relu(conv(F.relu(conv(h, m[0].weight, m[0].bias)), m[1].weight, m[1].bias)), m[2].weight, m[2].bias)

    def forward(self, x, alpha):
        def block(i, blk, h, c):
            r = c(f"body.{i}.conv2", blk.conv2, F.relu(c(f"body.{i}.conv1", blk.conv1, h)))
            y = h + r
            return y + alpha * self._tb(i, y) if i in self.after else y
        return self.base.run(x, block=block)

    def export_graph(self, g):
        def block(i, blk, h, cnode):
            r = cnode(f"body.{i}.conv1", blk.conv1, h, "relu")
            r = cnode(f"body.{i}.conv2", blk.conv2, r)
            y = g.node(f"body.{i}.add", "add", [h, r], act="none")
            if i not in self.after:
                return y
            m = self.tb[str(i)]
            t = cnode(f"body.{i}.tb1", m[0], y, "relu")
            t = cnode(f"body.{i}.tb2", m[1], t, "relu")
            t = cnode(f"body.{i}.tb3", m[2], t)
            return g.node(f"body.{i}.tb_add", "add", [y, t], gain={"axis": 0}, act="none")
        return self.base.export_graph(g, block=block)


# ----------------------------------------------------------------------------------- plain stacks

class DnCNN(nn.Module):
    """Plain conv stack: conv+ReLU x (depth-1), last conv no act; residual output x - net(x)."""

    family = "dncnn"

    def __init__(self, in_ch=3, channels=16, depth=5, k=3):
        super().__init__()
        self.in_ch = in_ch
        chans = [in_ch] + [channels] * (depth - 1) + [in_ch]
        self.convs_ = nn.ModuleList([nn.Conv2d(a, b, k, padding=k // 2) for a, b in zip(chans[:-1], chans[1:])])

    def forward(self, x, alpha=None):
        h = x
        for j, m in enumerate(self.convs_):
            h = conv(h, m.weight, m.bias)
            if j < len(self.convs_) - 1:
                h = F.relu(h)
        return x - h

    def default_levels(self):
        return []

    def export_graph(self, g):
        h = "input"
        n = len(self.convs_)
        for j, m in enumerate(self.convs_):
            h = g.node(f"conv{j}", "conv", [h], weight=g.t(f"conv{j}.weight", m.weight), bias=g.t(f"conv{j}.bias", m.bias),
                       act="relu" if j < n - 1 else "none")
        return g.node("out", "add", ["input", h], gain=-1.0, act="none")


class BasisDnCNN(nn.Module):
    """Multi-axis (two knobs) DnCNN-style stack: every conv is W0 + l0 D0 + l1 D1 (same for the bias);
    residual output x - net(x). forward(x, levels) with levels = [l0, l1]."""

    family = "basis"

    def __init__(self, in_ch=3, channels=16, depth=5, axes=2, k=3):
        super().__init__()
        self.axes = axes
        self.in_ch = in_ch
        chans = [in_ch] + [channels] * (depth - 1) + [in_ch]
        self.w0 = nn.ParameterList()
        self.b0 = nn.ParameterList()
        self.d = nn.ParameterList()
        self.e = nn.ParameterList()
        for a, b in zip(chans[:-1], chans[1:]):
            m = nn.Conv2d(a, b, k, padding=k // 2)
            self.w0.append(nn.Parameter(m.weight.data.clone()))
            self.b0.append(nn.Parameter(m.bias.data.clone()))
            self.d.append(nn.Parameter(0.1 * torch.randn(axes, b, a, k, k) / math.sqrt(a * k * k)))
            self.e.append(nn.Parameter(0.01 * torch.randn(axes, b)))

    def forward(self, x, levels):
        h = x
        n = len(self.w0)
        for j in range(n):
            w = self.w0[j] + sum(levels[p] * self.d[j][p] for p in range(self.axes))
            b = self.b0[j] + sum(levels[p] * self.e[j][p] for p in range(self.axes))
            h = conv(h, w, b)
            if j < n - 1:
                h = F.relu(h)
        return x - h

    def default_levels(self):
        return [{"name": f"l{p}", "min": 0.0, "max": 1.0, "extrapolate": False} for p in range(self.axes)]

    def export_graph(self, g):
        h = "input"
        n = len(self.w0)
        for j in range(n):
            coef = []
            for p in range(self.axes):
                row = [0.0] * (1 + self.axes)  # [offset, g_0 .. g_{axes-1}]
                row[1 + p] = 1.0
                coef.append(row)
            mod = {"type": "basis", "deltas": [g.t(f"conv{j}.delta{p}", self.d[j][p]) for p in range(self.axes)],
                   "bias_deltas": [g.t(f"conv{j}.bias_delta{p}", self.e[j][p]) for p in range(self.axes)], "coef": coef}
            h = g.node(f"conv{j}", "conv", [h], weight=g.t(f"conv{j}.weight", self.w0[j]), bias=g.t(f"conv{j}.bias", self.b0[j]),
                       act="relu" if j < n - 1 else "none", mod=mod)
        return g.node("out", "add", ["input", h], gain=-1.0, act="none")


class FFDNet(nn.Module):
    """FFDNet-style: unshuffle(2), a constant channel sigma/255 concatenated LAST, conv3x3+ReLU stack,
    last conv no act, shuffle(2); predicts the clean image (no global residual). forward(x, sigma) with
    sigma on the 0..255 scale (a number or a [N] tensor)."""

    family = "ffdnet"

    def __init__(self, in_ch=3, channels=32, depth=5, k=3, sigma_max=255.0):
        super().__init__()
        self.sigma_max = sigma_max
        self.in_ch = in_ch
        chans = [4 * in_ch + 1] + [channels] * (depth - 1) + [4 * in_ch]
        self.convs_ = nn.ModuleList([nn.Conv2d(a, b, k, padding=k // 2) for a, b in zip(chans[:-1], chans[1:])])

    def forward(self, x, sigma):
        u = F.pixel_unshuffle(x, 2)
        s = torch.as_tensor(sigma, dtype=u.dtype, device=u.device).reshape(-1, 1, 1, 1) / 255.0
        h = torch.cat([u, s.expand(u.shape[0], 1, u.shape[2], u.shape[3])], 1)
        n = len(self.convs_)
        for j, m in enumerate(self.convs_):
            h = conv(h, m.weight, m.bias)
            if j < n - 1:
                h = F.relu(h)
        return F.pixel_shuffle(h, 2)

    def default_levels(self):
        return [{"name": "sigma", "min": 0.0, "max": float(self.sigma_max), "extrapolate": False, "unit": "sigma",
                 "calibration": [[0.0, 0.0], [float(self.sigma_max), float(self.sigma_max)]]}]

    def export_graph(self, g):
        h = g.node("unshuffle", "unshuffle", ["input"])
        n = len(self.convs_)
        for j, m in enumerate(self.convs_):
            f = {"weight": g.t(f"conv{j}.weight", m.weight), "bias": g.t(f"conv{j}.bias", m.bias),
                 "act": "relu" if j < n - 1 else "none"}
            if j == 0:
                f["noise_channel"] = {"axis": 0, "scale": 1.0 / 255.0}
            h = g.node(f"conv{j}", "conv", [h], **f)
        return g.node("out", "shuffle", [h])


FAMILIES = {"plain": Backbone, "dni": DNINet, "adafm": AdaFMNet, "ftn": FTNNet, "cfsnet": CFSNet,
            "dynamic": DynamicNet, "basis": BasisDnCNN, "ffdnet": FFDNet, "dncnn": DnCNN}
TRAINED_FAMILIES = ("dni", "adafm", "ftn", "cfsnet")


def make_family(family, base, adafm_k=3, ftn_groups=None):
    """Wraps a (trained) Backbone into a tunable family at its start state (alpha=1 == alpha=0)."""
    if family == "dni":
        m = DNINet(base)
    elif family == "adafm":
        m = AdaFMNet(base, k=adafm_k)
    elif family == "ftn":
        m = FTNNet(base, groups=ftn_groups)
    elif family == "cfsnet":
        m = CFSNet(base)
    elif family == "dynamic":
        m = DynamicNet(base)
    else:
        raise ValueError(f"unknown family {family!r}")
    m.freeze_base()
    return m


def load_model(ckpt, base=None, map_location="cpu"):
    """Loads a train.py checkpoint (ckpt.pt or model.pt). For a family checkpoint the base backbone
    comes from `base` (path) or, if None, from the path recorded in its config. Returns (model, config)."""
    d = torch.load(ckpt, map_location=map_location, weights_only=False)
    cfg = d["config"]
    arch = dict(channels=cfg["channels"], blocks=cfg["blocks"], in_ch=cfg.get("in_ch", 3))
    if cfg["family"] in ("base", "plain"):
        m = Backbone(**arch)
        m.load_state_dict(d["state"])
        return m, cfg
    if cfg.get("recipe") == "joint":  # whole state: both ends were trained
        m = DNINet(Backbone(**arch))
        m.load_state_dict(d["state"])
        return m, cfg
    bpath = base or cfg["base"]
    b, _ = load_model(bpath, map_location=map_location)
    m = make_family(cfg["family"], b, adafm_k=cfg.get("adafm_k", 3), ftn_groups=cfg.get("ftn_groups"))
    m.load_trainable_state(d["state"])
    return m, cfg


def _color_to_gray(name, t):
    """A color tensor of the backbone as its gray twin: the head sums its input over colors, the
    tail averages its output over colors (pixel-unshuffle order is channel * 4 + sub-pixel)."""
    if name.startswith("head.weight"):
        return t.reshape(t.shape[0], 3, 4, *t.shape[2:]).sum(1)
    if name.startswith("tail.weight"):
        return t.reshape(3, 4, *t.shape[1:]).mean(0)
    if name.startswith("tail.bias"):
        return t.reshape(3, 4).mean(0)
    return t


def from_tunable_file(path, family, in_ch=3, mix_alpha=None):
    """A Backbone (family 'base') or DNINet (family 'dni') from an exported plain or DNI file (export.py's
    tensor names: <conv>.weight, <conv>.bias and, for DNI, <conv>.weight_end, <conv>.bias_end). A DNI
    target from a plain file gets end = base. in_ch=1 from a color file converts to gray. mix_alpha
    (family 'base' from a DNI file): the plain network the engine runs at that level,
    start + alpha (end - start), the starting point of a dedicated model at that level."""
    from safetensors import safe_open
    import json
    with safe_open(path, "pt") as f:
        spec = json.loads(f.metadata()["tunable"])
        T = {k: f.get_tensor(k).float() for k in f.keys()}
    src_ch = spec["in_channels"]
    if in_ch != src_ch and not (in_ch == 1 and src_ch == 3):
        raise ValueError(f"{path}: cannot convert {src_ch} channels to {in_ch}")
    channels = T["head.weight"].shape[0]
    blocks = sum(1 for k in T if k.endswith(".conv1.weight"))
    base = Backbone(channels=channels, blocks=blocks, in_ch=in_ch)

    def load(net, suffix):
        with torch.no_grad():
            for name, mod in net.convs():
                for field in ("weight", "bias"):
                    key = f"{name}.{field}{suffix}"
                    t = T[key] if key in T else T[f"{name}.{field}"]
                    if mix_alpha is not None and suffix == "" and f"{key}_end" in T:
                        t = t + mix_alpha * (T[f"{key}_end"] - t)
                    if in_ch != src_ch:
                        t = _color_to_gray(f"{name}.{field}", t)
                    getattr(mod, field).copy_(t)
    load(base, "")
    if family == "base":
        return base
    if mix_alpha is not None:
        raise ValueError("mix_alpha makes a plain network: use family 'base'")
    if family != "dni":
        raise ValueError(f"--init supports families base and dni, not {family!r}")
    m = DNINet(base)
    load(m.end, "_end")
    return m


def randomize_(model, seed=0, std=0.05):
    """For golden tests: perturb every parameter and buffer (identity/zero inits included) with seeded
    noise so that no branch is trivially identity. PReLU slopes and couplings get O(1) noise."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            noise = torch.randn(t.shape, generator=gen) * std
            if name.endswith("prelu") or name.endswith("c0") or name.endswith("c1"):
                noise = noise * (0.5 / std)
            t.add_(noise.to(t))
    return model
