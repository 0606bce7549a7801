"""The [net] section: every key of parser.c:parse_net_options, with the reference's defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from darkcfg.model.cfg import Section

POLICIES = ("random", "poly", "constant", "step", "exp", "sigmoid", "steps", "sgdr")


@dataclass
class NetConfig:
    """Values of [net]. `batch` is the cfg's batch; `mini_batch` = batch/subdivisions as the reference."""

    batch: int = 1
    subdivisions: int = 1
    time_steps: int = 1
    width: int = 0
    height: int = 0
    channels: int = 0
    inputs: int = 0
    max_batches: int = 0
    learning_rate: float = 0.001
    learning_rate_min: float = 1e-5
    sgdr_cycle: int = 0
    sgdr_mult: int = 2
    momentum: float = 0.9
    decay: float = 0.0001
    adam: int = 0
    B1: float = 0.9
    B2: float = 0.999
    eps: float = 1e-6
    policy: str = "constant"
    burn_in: int = 0
    power: float = 4.0
    step: int = 1
    scale: float = 1.0
    gamma: float = 1.0
    steps: list[int] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    seq_scales: list[float] = field(default_factory=list)
    max_crop: int = 0
    min_crop: int = 0
    flip: int = 1
    blur: int = 0
    gaussian_noise: int = 0
    mixup: int = 0  # 4 mosaic+cutmix, 2 cutmix, 3 mosaic, else the `mixup` key
    cutmix: int = 0
    mosaic: int = 0
    letter_box: int = 0
    mosaic_bound: int = 0
    angle: float = 0.0
    aspect: float = 1.0
    saturation: float = 1.0
    exposure: float = 1.0
    hue: float = 0.0
    label_smooth_eps: float = 0.0
    resize_step: float = 32.0
    adversarial_lr: float = 0.0
    max_chart_loss: float = 20.0
    ema_alpha: float = 0.0
    loss_scale: float = 1.0
    dynamic_minibatch: int = 0
    track: int = 0
    augment_speed: int = 2
    sequential_subdivisions: int = 1
    try_fix_nan: int = 0
    weights_reject_freq: int = 0
    equidistant_point: int = 0
    badlabels_rejection_percentage: float = 0.0
    num_sigmas_reject_badlabels: float = 0.0
    contrastive: int = 0
    contrastive_jit_flip: int = 0
    contrastive_color: int = 0
    unsupervised: int = 0
    attention: int = 0
    optimized_memory: int = 0
    workspace_size_limit_MB: float = 1024.0
    use_cuda_graph: int = 0
    show_receptive_field: float = 0.0

    @property
    def mini_batch(self) -> int:
        return max(1, self.batch // max(1, self.subdivisions))

    @classmethod
    def from_section(cls, sec: Section) -> NetConfig:
        """Read [net] as parse_net_options does (every key is looked up, so unused ones can be reported)."""
        n = cls()
        n.max_batches = sec.int("max_batches", 0)
        n.batch = sec.int("batch", 1)
        n.learning_rate = sec.float("learning_rate", 0.001)
        n.learning_rate_min = sec.float("learning_rate_min", 1e-5)
        n.sgdr_cycle = sec.int("sgdr_cycle", n.max_batches)
        n.sgdr_mult = sec.int("sgdr_mult", 2)
        n.momentum = sec.float("momentum", 0.9)
        n.decay = sec.float("decay", 0.0001)
        n.subdivisions = sec.int("subdivisions", 1)
        if n.subdivisions < 1 or n.batch < 1:
            raise sec.error(f"batch={n.batch}, subdivisions={n.subdivisions}: expected positive values")
        n.time_steps = sec.int("time_steps", 1)
        n.track = sec.int("track", 0)
        n.augment_speed = sec.int("augment_speed", 2)
        n.sequential_subdivisions = min(sec.int("sequential_subdivisions", n.subdivisions), n.subdivisions)
        n.try_fix_nan = sec.int("try_fix_nan", 0)
        n.weights_reject_freq = sec.int("weights_reject_freq", 0)
        n.equidistant_point = sec.int("equidistant_point", 0)
        n.badlabels_rejection_percentage = sec.float("badlabels_rejection_percentage", 0.0)
        n.num_sigmas_reject_badlabels = sec.float("num_sigmas_reject_badlabels", 0.0)
        n.ema_alpha = sec.float("ema_alpha", 0.0)
        n.use_cuda_graph = sec.int("use_cuda_graph", 0)
        n.loss_scale = sec.float("loss_scale", 1.0)
        n.dynamic_minibatch = sec.int("dynamic_minibatch", 0)
        n.optimized_memory = sec.int("optimized_memory", 0)
        n.workspace_size_limit_MB = sec.float("workspace_size_limit_MB", 1024.0)
        n.adam = sec.int("adam", 0)
        if n.adam:
            n.B1 = sec.float("B1", 0.9)
            n.B2 = sec.float("B2", 0.999)
            n.eps = sec.float("eps", 1e-6)
        n.height = sec.int("height", 0)
        n.width = sec.int("width", 0)
        n.channels = sec.int("channels", 0)
        n.inputs = sec.int("inputs", n.height * n.width * n.channels)
        n.max_crop = sec.int("max_crop", n.width * 2)
        n.min_crop = sec.int("min_crop", n.width)
        n.flip = sec.int("flip", 1)
        n.blur = sec.int("blur", 0)
        n.gaussian_noise = sec.int("gaussian_noise", 0)
        n.mixup = sec.int("mixup", 0)
        n.cutmix = sec.int("cutmix", 0)
        n.mosaic = sec.int("mosaic", 0)
        if n.mosaic and n.cutmix:
            n.mixup = 4
        elif n.cutmix:
            n.mixup = 2
        elif n.mosaic:
            n.mixup = 3
        n.letter_box = sec.int("letter_box", 0)
        n.mosaic_bound = sec.int("mosaic_bound", 0)
        n.contrastive = sec.int("contrastive", 0)
        n.contrastive_jit_flip = sec.int("contrastive_jit_flip", 0)
        n.contrastive_color = sec.int("contrastive_color", 0)
        n.unsupervised = sec.int("unsupervised", 0)
        n.label_smooth_eps = sec.float("label_smooth_eps", 0.0)
        n.resize_step = sec.float("resize_step", 32.0)
        n.attention = sec.int("attention", 0)
        n.adversarial_lr = sec.float("adversarial_lr", 0.0)
        n.max_chart_loss = sec.float("max_chart_loss", 20.0)
        n.angle = sec.float("angle", 0.0)
        n.aspect = sec.float("aspect", 1.0)
        n.saturation = sec.float("saturation", 1.0)
        n.exposure = sec.float("exposure", 1.0)
        n.hue = sec.float("hue", 0.0)
        n.power = sec.float("power", 4.0)
        if not n.inputs and not (n.height and n.width and n.channels):
            raise sec.error("no input size: expected width, height and channels (or inputs) in [net]")
        policy = sec.str("policy", "constant")
        if policy not in POLICIES:
            opt = sec.find("policy")
            sec.warn(f"unknown policy '{policy}', using constant as the reference does", opt.line if opt else None)
            policy = "constant"
        n.policy = policy
        n.burn_in = sec.int("burn_in", 0)
        if policy == "step":
            n.step = sec.int("step", 1)
            n.scale = sec.float("scale", 1.0)
        elif policy in ("steps", "sgdr"):
            steps = sec.ints("steps")
            scales = sec.floats("scales")
            seq = sec.floats("seq_scales")
            if policy == "steps" and (steps is None or scales is None):
                raise sec.error("policy=steps needs both 'steps' and 'scales'")
            if steps is not None:
                k = len(steps)
                for name, values in (("scales", scales), ("seq_scales", seq)):
                    if values is not None and len(values) < k:
                        raise sec.error(f"'{name}' has {len(values)} values, expected {k} (one per step)")
                n.steps = steps
                n.scales = (scales or [1.0] * k)[:k]
                n.seq_scales = (seq or [1.0] * k)[:k]
        elif policy == "exp":
            n.gamma = sec.float("gamma", 1.0)
        elif policy == "sigmoid":
            n.gamma = sec.float("gamma", 1.0)
            n.step = sec.int("step", 1)
        n.show_receptive_field = sec.float("show_receptive_field", 0.0)
        return n

    def override_size(self, width: Optional[int], height: Optional[int]) -> None:
        if width:
            self.width = width
        if height:
            self.height = height
        self.inputs = self.width * self.height * self.channels
