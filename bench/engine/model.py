"""DeepLab-V3 on a torchvision ResNet, with one classifier per incremental step.

The architecture follows the continual-segmentation literature (MiB, PLOP, ...): a ResNet-101
backbone at output stride 16, ASPP (rates 6/12/18 plus image pooling, 256 channels), a 3x3
conv + BN + ReLU head, and a 1x1 classifier. Two deliberate deviations from those codebases:

* Normalisation is plain ``nn.BatchNorm2d``. The original code used InPlaceABN-sync, which no
  longer builds against current PyTorch/CUDA; BatchNorm2d + ReLU computes the same function
  (with higher activation memory). Data-parallel runs convert it to BatchNorm over the global
  batch (``bench.engine.batchnorm.for_ranks``).
* The classifier is one 1x1 conv *per step* (``nn.ModuleList``) whose outputs are concatenated.
  Old rows therefore stay exactly as they were unless a method changes them, and freezing a
  step's classifier is just ``requires_grad_(False)`` on its own module.

The small backbones ("resnet18", "resnet34") run through the same code path so the embedded
synthetic benchmark exercises the real model; torchvision's BasicBlock refuses dilation > 1, so
:func:`set_output_stride` converts strides into dilations by editing the built convolutions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.segmentation.deeplabv3 import ASPP

from bench.errors import BenchError
from bench.spec import ModelConfig
from methods.base import ModelOutput

# name -> (constructor, torchvision weights enum used only to know the cached file names)
BACKBONES: dict[str, tuple[Callable[[], ResNet], type[models.WeightsEnum]]] = {
    "resnet18": (models.resnet18, models.ResNet18_Weights),
    "resnet34": (models.resnet34, models.ResNet34_Weights),
    "resnet50": (models.resnet50, models.ResNet50_Weights),
    "resnet101": (models.resnet101, models.ResNet101_Weights),
}
OUTPUT_STRIDES = (8, 16, 32)


def set_output_stride(resnet: ResNet, output_stride: int) -> None:
    """Turn the strides of the last ResNet stages into dilations, in place, for both block types.

    Matches torchvision's ``replace_stride_with_dilation``: in a converted stage the first block
    keeps the previous dilation (its stride becomes 1) and the later blocks use the new one.
    Written by hand because torchvision's BasicBlock raises on dilation > 1 at construction.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise BenchError(
            f"model.output_stride={output_stride} is not supported; use one of {OUTPUT_STRIDES}."
        )
    num_dilated = {32: 0, 16: 1, 8: 2}[output_stride]
    stages = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4]
    dilation = 1
    for stage in stages[len(stages) - num_dilated :]:
        previous, dilation = dilation, dilation * 2
        for i, block in enumerate(stage):
            d = previous if i == 0 else dilation
            if isinstance(block, Bottleneck):
                convs3x3 = [block.conv2]
            elif isinstance(block, BasicBlock):
                convs3x3 = [block.conv1, block.conv2]
            else:
                raise TypeError(f"unsupported ResNet block {type(block).__name__}")
            for conv in convs3x3:
                conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)


def make_resnet(backbone: str, base_channels: int = 64) -> ResNet:
    """Build a torchvision ResNet, optionally narrower than torchvision's 64 base channels.

    A narrow ResNet (same blocks and depths, every stage's width scaled) makes the embedded
    synthetic benchmark affordable on a CPU. It is rebuilt with torchvision's own ``_make_layer``
    so the blocks are the real ones, and re-initialised the way torchvision initialises ResNets.
    No ImageNet weights exist for it.
    """
    if backbone not in BACKBONES:
        raise BenchError(
            f"model.backbone={backbone!r} is unknown; choose one of {sorted(BACKBONES)}."
        )
    if base_channels <= 0:
        raise BenchError(f"model.base_channels={base_channels} must be positive (default 64).")
    net = BACKBONES[backbone][0]()
    if base_channels == 64:
        return net
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    block, depths = type(net.layer1[0]), [len(stage) for stage in stages]
    net.inplanes, net.dilation = base_channels, 1
    net.conv1 = nn.Conv2d(3, base_channels, 7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(base_channels)
    for i, depth in enumerate(depths):
        layer = net._make_layer(block, base_channels * 2**i, depth, stride=1 if i == 0 else 2)
        setattr(net, f"layer{i + 1}", layer)
    net.fc = nn.Linear(base_channels * 8 * block.expansion, net.fc.out_features)
    for m in net.modules():  # same init as torchvision's ResNet.__init__
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def _head(channels: int) -> nn.Sequential:
    """DeepLabV3Head's 3x3 conv + BN + ReLU that sits between ASPP and the classifier."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class DeepLabV3(nn.Module):
    """DeepLab-V3 with a per-step classifier; see the module docstring for the design."""

    def __init__(
        self,
        backbone: str,
        classes_per_step: Sequence[int],
        output_stride: int = 16,
        aspp_channels: int = 256,
        aspp_rates: Sequence[int] = (6, 12, 18),
        aspp_dropout: float = 0.0,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        if not classes_per_step or any(n <= 0 for n in classes_per_step):
            raise BenchError(f"classes_per_step={list(classes_per_step)} must be positive counts.")
        if aspp_channels <= 0:
            raise BenchError(f"model.aspp_channels={aspp_channels} must be positive.")
        self.backbone_name = backbone
        self.output_stride = output_stride
        self.base_channels = base_channels
        resnet = make_resnet(backbone, base_channels)
        set_output_stride(resnet, output_stride)
        encoder_channels = resnet.fc.in_features
        del resnet.avgpool, resnet.fc  # unused; also keeps the state_dict free of fc.* keys
        self.backbone = resnet
        self.encoder_channels: int = encoder_channels
        self.decoder_channels: int = aspp_channels
        # torchvision's ASPP: four conv branches + image pooling, 1x1 projection, dropout 0.5.
        self.aspp = ASPP(encoder_channels, list(aspp_rates), aspp_channels)
        # torchvision's ASPP ends in Dropout(0.5); the DeepLab-V3 of MiB/SDR has none there.
        self.aspp.project[-1].p = aspp_dropout
        self.head = _head(aspp_channels)
        self.classifiers = nn.ModuleList()
        for n in classes_per_step:
            self.add_classifier(n)

    @property
    def num_classes(self) -> int:
        """Total number of output channels over all steps."""
        return sum(self.classes_per_step)

    @property
    def classes_per_step(self) -> tuple[int, ...]:
        return tuple(c.out_channels for c in self.classifiers)

    def add_classifier(self, num_new_classes: int) -> nn.Conv2d:
        """Append a 1x1 conv for a new step (default torch init) and return it.

        It is created on the device/dtype of the model, so it works after ``.to(device)``.
        Methods that need a special init (e.g. MiB's background-based one) edit the returned conv.
        """
        if num_new_classes <= 0:
            raise BenchError(f"a new step must add at least one class, got {num_new_classes}.")
        ref = self.head[0].weight
        conv = nn.Conv2d(self.decoder_channels, num_new_classes, 1)
        conv.to(device=ref.device, dtype=ref.dtype)
        self.classifiers.append(conv)
        return conv

    def encode(self, images: Tensor) -> tuple[Tensor, ...]:
        """Backbone forward; returns the outputs of layer1..layer4."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        stages = []
        for layer in (b.layer1, b.layer2, b.layer3, b.layer4):
            x = layer(x)
            stages.append(x)
        return tuple(stages)

    def classify(self, decoder: Tensor) -> Tensor:
        """Concatenate every step's classifier output (old steps first)."""
        return torch.cat([c(decoder) for c in self.classifiers], dim=1)

    @staticmethod
    def upsample(logits: Tensor, size: Sequence[int]) -> Tensor:
        """Bilinear (align_corners=False) resize of low-resolution logits to ``size`` (H, W)."""
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, images: Tensor) -> ModelOutput:
        stages = self.encode(images)
        decoder = self.head(self.aspp(stages[-1]))
        lowres = self.classify(decoder)
        return ModelOutput(
            logits=self.upsample(lowres, images.shape[-2:]),
            logits_lowres=lowres,
            encoder=stages[-1],
            decoder=decoder,
            stages=stages,
        )


def cached_weight_paths(backbone: str) -> list[Path]:
    """Where torchvision's cache would hold ImageNet weights for ``backbone`` (all versions)."""
    weights_enum = BACKBONES[backbone][1]
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return [checkpoints / Path(w.url).name for w in weights_enum]


def load_backbone_weights(model: DeepLabV3, path: str | Path) -> None:
    """Load a torchvision ResNet state_dict into the backbone (strict, ``fc.*`` ignored)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(
            f"pretrained backbone weights not found at {path}; pass an existing file as "
            "model.pretrained=PATH, 'auto' for torchvision's cache, or 'none'."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the user's to fix
        raise BenchError(f"cannot read pretrained weights {path}: {err}") from err
    if not isinstance(state, dict):
        raise BenchError(f"{path} does not hold a state_dict (got {type(state).__name__}).")
    load_backbone_state(model, state, str(path))


def load_backbone_state(model: DeepLabV3, state: dict, source: str) -> None:
    """Load a ResNet state_dict into the backbone (strict, ``fc.*`` ignored)."""
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BenchError(
            f"{source} is not a torchvision {model.backbone_name} state_dict "
            f"(model.backbone={model.backbone_name}): {err}"
        ) from err


def build_model(
    config: ModelConfig, classes_per_step: Sequence[int], log: Callable[[str], None] = print,
    backbone_state: dict | None = None,
) -> DeepLabV3:
    """Build the model from ``config`` and load backbone weights as ``config.pretrained`` says
    (``synth``: ``backbone_state``, the embedded pretraining's, bench.engine.pretraining)."""
    model = DeepLabV3(
        config.backbone,
        classes_per_step,
        output_stride=config.output_stride,
        aspp_channels=config.aspp_channels,
        aspp_rates=config.aspp_rates,
        aspp_dropout=config.aspp_dropout,
        base_channels=config.base_channels,
    )
    pretrained = config.pretrained
    if pretrained is None or str(pretrained).lower() == "none":
        log(f"model: {config.backbone} backbone from random initialisation (pretrained=none)")
    elif pretrained == "synth":
        if backbone_state is None:
            raise BenchError("model.pretrained=synth needs the embedded pretraining's backbone "
                             "(bench.engine.runner.pretrained_backbone); run it through "
                             "the engine")
        load_backbone_state(model, backbone_state, "the embedded pretraining's backbone")
    elif config.base_channels != 64 and pretrained != "auto":
        raise BenchError(
            f"model.pretrained={pretrained!r} needs model.base_channels=64 (ImageNet weights exist "
            f"only at torchvision's width, not {config.base_channels}); set model.pretrained=none."
        )
    elif pretrained == "auto":
        candidates = cached_weight_paths(config.backbone)
        found = next((p for p in candidates if p.is_file()), None)
        if found is None or config.base_channels != 64:
            # Published numbers all start from ImageNet weights: a silent random start would
            # give plausible-looking but incomparable results, so this stops the run.
            where = ("a narrow backbone (model.base_channels != 64) has none"
                     if config.base_channels != 64
                     else "looked in " + ", ".join(str(p) for p in candidates))
            raise BenchError(
                f"no ImageNet weights for the {config.backbone} backbone ({where}). Put "
                "torchvision's file there or pass model.pretrained=PATH (a torchvision ResNet "
                "state_dict); model.pretrained=none trains the backbone from random "
                "initialisation (nothing is ever downloaded)."
            )
        load_backbone_weights(model, found)
        log(f"model: loaded ImageNet {config.backbone} weights from {found}")
    else:
        load_backbone_weights(model, pretrained)
        log(f"model: loaded {config.backbone} backbone weights from {pretrained}")
    return model
