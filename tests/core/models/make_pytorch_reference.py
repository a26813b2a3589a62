#!/usr/bin/env python3
"""Writes pytorch_reference.h: whole small networks in PyTorch (float64, training mode) with the
weights, inputs and labels that zoo_test.cpp sets, and per parameter tensor the norm of its
gradient and the gradient's dot product with a seeded projection.

The seeded values are those of tests/core/gradient_check.h's random_values: std::mt19937 seeded
with an integer (numpy's MT19937 with legacy seeding gives the same words), mapped to float in
the same float32 operations.

    python3 tests/core/models/make_pytorch_reference.py | clang-format --assume-filename=x.h \
        > tests/core/models/pytorch_reference.h
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck

# The CIFAR unit with option-A shortcuts (He et al. 2015) is the conformance tests' own.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conformance"))
from reference_models import BasicA  # noqa: E402

torch.set_default_dtype(torch.float64)


def random_values(n, seed, lo=-1.0, hi=1.0):
    """gradient_check.h's random_values: lo + (hi - lo) * float(gen() >> 8) * 2^-24 in float32."""
    bits = np.random.MT19937(0)
    bits._legacy_seeding(seed)
    words = np.asarray(bits.random_raw(n), dtype=np.uint64) >> np.uint64(8)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    scaled = (hi32 - lo32) * words.astype(np.float32) * np.float32(1.0 / 16777216.0)
    return torch.tensor((lo32 + scaled).astype(np.float64))


class PreActBottleneck(nn.Module):
    """He et al. 2016: full pre-activation; a projection sees the pre-activated input."""

    def __init__(self, cin, planes, stride, groups=1, width_per_group=64):
        super().__init__()
        out, width = planes * 4, int(planes * width_per_group / 64) * groups
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False))

    def forward(self, x):
        a = F.relu(self.bn1(x))
        shortcut = self.downsample(a) if self.downsample is not None else x
        h = self.conv1(a)
        h = self.conv2(F.relu(self.bn2(h)))
        h = self.conv3(F.relu(self.bn3(h)))
        return h + shortcut


class Network(nn.Module):
    def __init__(self, block, in_channels, classes, stem, stem_channels, blocks, planes, groups=1,
                 width_per_group=64, shortcut="B", preact=False):
        super().__init__()
        self.imagenet, self.preact, self.stages = stem == "imagenet", preact, len(blocks)
        if self.imagenet:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_channels)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=False)
            if not preact:  # a pre-activation net's first unit normalises the stem itself
                self.bn1 = nn.BatchNorm2d(stem_channels)
        c, expansion = stem_channels, 4 if block == "bottleneck" else 1
        for stage, (n, p) in enumerate(zip(blocks, planes)):
            units = []
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                if preact:
                    units.append(PreActBottleneck(c, p, stride, groups, width_per_group))
                elif shortcut == "A":
                    units.append(BasicA(c, p, stride))
                else:
                    down = None
                    if stride != 1 or c != p * expansion:
                        down = nn.Sequential(nn.Conv2d(c, p * expansion, 1, stride, bias=False),
                                             nn.BatchNorm2d(p * expansion))
                    if block == "basic":
                        units.append(BasicBlock(c, p, stride, down))
                    else:
                        units.append(Bottleneck(c, p, stride, down, groups=groups,
                                                base_width=width_per_group))
                c = p * expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*units))
        if preact:
            self.final_bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.conv1(x)
        if hasattr(self, "bn1"):
            x = F.relu(self.bn1(x))
        if self.imagenet:
            x = self.maxpool(x)
        for s in range(self.stages):
            x = getattr(self, f"layer{s + 1}")(x)
        if self.preact:
            x = F.relu(self.final_bn(x))
        return self.fc(x.mean((2, 3)))


# zoo_test.cpp's tiny_spec() and model_spec("resnet20", 1, 10).
NETWORKS = {
    "Resnet20": dict(block="basic", in_channels=1, classes=10, stem="cifar", stem_channels=16,
                     blocks=[3, 3, 3], planes=[16, 32, 64], shortcut="A"),
    "TinyResnext": dict(block="bottleneck", in_channels=3, classes=5, stem="cifar", stem_channels=8,
                        blocks=[1, 2], planes=[4, 8], groups=2, width_per_group=32),
    "TinyPreact": dict(block="bottleneck", in_channels=2, classes=4, stem="cifar", stem_channels=8,
                       blocks=[1, 1], planes=[4, 8], preact=True),
    "TinyImagenet": dict(block="basic", in_channels=3, classes=6, stem="imagenet", stem_channels=8,
                         blocks=[1, 1], planes=[8, 16]),
}

def set_test_weights(net):
    """zoo_test.cpp's set_test_weights, in the order Network::parameters() gives."""
    for t, (name, p) in enumerate(net.named_parameters()):
        seed = 1000 + t
        if p.dim() == 4:
            b = float(np.float32(math.sqrt(6.0 / (p.shape[1] * p.shape[2] * p.shape[3]))))
            v = random_values(p.numel(), seed, -b, b)
        elif name.startswith("fc."):
            v = random_values(p.numel(), seed, -0.25, 0.25)
        elif name.endswith("weight"):
            v = random_values(p.numel(), seed, 0.5, 1.5)
        else:
            v = random_values(p.numel(), seed, -0.3, 0.3)
        p.data.copy_(v.view(p.shape))


def main():
    print("// Generated by make_pytorch_reference.py: whole networks in PyTorch (float64, training")
    print("// mode) with the weights, inputs and labels that zoo_test.cpp sets. Per parameter tensor t")
    print("// (in collection order): the L2 norm of its gradient and the gradient's dot product with")
    print("// random_values(numel, 2000 + t). The PyTorch modules are torchvision's BasicBlock and")
    print("// Bottleneck (option B), the CIFAR unit with option A of He et al. 2015, and the full")
    print("// pre-activation bottleneck of He et al. 2016.")
    print("#pragma once\n\n#include <vector>\n\nnamespace rn::models {\n")
    print("struct ReferenceGradient {\n  const char* name;\n  double norm, projection;\n};\n")
    for ident, spec in NETWORKS.items():
        net = Network(**spec)
        set_test_weights(net)
        hw = 16 if spec["stem"] == "imagenet" else 8
        shape = (4, spec["in_channels"], hw, hw)
        x = random_values(math.prod(shape), 21).view(shape)
        labels = torch.tensor([i % spec["classes"] for i in range(4)])
        net.train()
        loss = F.cross_entropy(net(x), labels)
        loss.backward()
        print(f"inline constexpr double k{ident}Loss = {loss.item():.17g};\n")
        print(f"inline const std::vector<ReferenceGradient> k{ident}Gradients = {{")
        for t, (name, p) in enumerate(net.named_parameters()):
            g = p.grad.flatten()
            r = random_values(g.numel(), 2000 + t)
            print(f'    {{"{name}", {g.norm().item():.10g}, {(g * r).sum().item():.10g}}},')
        print("};\n")
    print("}  // namespace rn::models")


if __name__ == "__main__":
    main()
