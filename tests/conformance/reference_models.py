"""The PyTorch side of the conformance tests: torchvision's own resnet18, resnet50 and
resnext50_32x4d, and a small independent definition of the CIFAR networks of He et al. (ResNet-20
with option-A shortcuts, 2015; the full pre-activation ResNet-110, 2016) with torchvision's naming
habits, so that their state_dicts carry the names the project's checkpoints use."""
import torch.nn as nn
import torch.nn.functional as F


class PadShortcut(nn.Module):
    """Option A: subsample by the stride, zero channels added evenly before and after."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.before, self.after, self.stride = (cout - cin) // 2, cout - cin - (cout - cin) // 2, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.before, self.after))


class BasicA(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = PadShortcut(cin, planes, stride) if stride != 1 or cin != planes else nn.Identity()

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + self.shortcut(x))


class PreActBasic(nn.Module):
    """BN -> ReLU -> conv, twice; a projection shortcut (1x1, no BN) sees the pre-activated input."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False))

    def forward(self, x):
        a = F.relu(self.bn1(x))
        shortcut = self.downsample(a) if self.downsample is not None else x
        return self.conv2(F.relu(self.bn2(self.conv1(a)))) + shortcut


class CifarResNet(nn.Module):
    def __init__(self, depth, preact, in_channels, num_classes, stem_padding=1):
        super().__init__()
        n = (depth - 2) // 6
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, stem_padding, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for stage, planes in enumerate((16, 32, 64)):
            units = []
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                units.append((PreActBasic if preact else BasicA)(cin, planes, stride))
                cin = planes
            setattr(self, f"layer{stage + 1}", nn.Sequential(*units))
        if preact:
            self.final_bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        if not self.preact:
            x = F.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.preact:
            x = F.relu(self.final_bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# name -> (batch, input C x H x W, classes) of the conformance runs: small inputs keep CI short.
# preact_resnet110 runs on 8 x 3 x 8 x 8: at 2 x 3 x 32 x 32 its training-mode backward (110
# layers of batch-2 BN) amplifies rounding so much that PyTorch's own float32 gradients differ from
# float64 by 4e-2, and no float32 implementation can be held to 1e-3 there (tests/README.md,
# "Conformance with PyTorch").
INPUTS = {
    "resnet18": (2, (3, 64, 64), 1000),
    "resnet50": (4, (3, 48, 48), 1000),
    "resnext50_32x4d": (4, (3, 48, 48), 1000),
    "resnet20": (2, (1, 28, 28), 10),
    "preact_resnet110": (8, (3, 8, 8), 10),
}


def build(name, in_channels, num_classes, break_padding=False):
    """The reference network; `break_padding` gives the stem convolution one pixel too much
    padding (the deliberate error that must make the comparison fail)."""
    if name in ("resnet20", "preact_resnet110"):
        depth = 20 if name == "resnet20" else 110
        return CifarResNet(depth, name.startswith("preact"), in_channels, num_classes,
                           stem_padding=2 if break_padding else 1)
    import torchvision
    net = getattr(torchvision.models, name)(num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if break_padding:
        net.conv1.padding = (4, 4)
    return net
