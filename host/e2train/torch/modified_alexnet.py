"""The 16-layer "Modified AlexNet" of paper 003 (Table 1), for 4 x 28 x 28 SAT-6 patches, 6 classes.

Table 1 names the sixteen layers and their order; the paper gives one shape besides, the
fourth convolution's (its section 4, "Node Level Performance": input 12 x 12 x 96, 64 kernels
of 3 x 3, output 12 x 12 x 64), and says the model has "more than 600,000 parameters". The
cited architecture paper (Unnikrishnan et al. 2018) is not among the project's sources, so the
other widths and pool sizes are chosen here to meet exactly those constraints:

    0 Conv2d(4->32, 3x3)+ReLU   28 -> 26      8 Conv2d(64->64, 3x3 p1)+ReLU
    1 BatchNorm2d(32)                         9 MaxPool2d to 6 x 6    12 -> 6
    2 MaxPool2d(2)              26 -> 13     10 Flatten               64*6*6 = 2304
    3 Conv2d(32->64, 3x3 p1)                 11 Dropout(0.5)
    4 BatchNorm2d(64)                        12 Linear(2304->256)+ReLU
    5 MaxPool2d(2, stride 1)    13 -> 12     13 Dropout(0.5)
    6 Conv2d(64->96, 3x3 p1)+ReLU            14 Linear(256->128)+ReLU
    7 Conv2d(96->64, 3x3 p1)+ReLU (the paper's 12x12x96 -> 12x12x64)   15 Linear(128->6)

Layer 9 is ``AdaptiveMaxPool2d(6)``: on the paper's 12 x 12 maps it is exactly MaxPool2d(2)
(windows of 2, stride 2), and it lets the same model take other image sizes (digits' 8 x 8).
791,302 parameters (BatchNorm included). The model is an ``nn.Sequential`` of the sixteen table rows, so the
paper's layer numbers index it directly and pipeline stages are slices of it
(``e2train.torch.distributed.partition.PAPER_SPLITS``).
"""
from __future__ import annotations

from torch import nn

NAME = "modified_alexnet"
LAYER_NAMES = ("Conv2d+ReLU", "BatchNorm2d", "MaxPool2d", "Conv2d", "BatchNorm2d", "MaxPool2d",
               "Conv2d+ReLU", "Conv2d+ReLU", "Conv2d+ReLU", "MaxPool2d", "Flatten", "Dropout",
               "Linear+ReLU", "Dropout", "Linear+ReLU", "Linear")


class ModifiedAlexNet(nn.Sequential):
    def __init__(self, in_channels: int = 4, num_classes: int = 6, dropout: float = 0.5):
        super().__init__(
            nn.Sequential(nn.Conv2d(in_channels, 32, 3), nn.ReLU()),
            nn.BatchNorm2d(32),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.MaxPool2d(2, stride=1),
            nn.Sequential(nn.Conv2d(64, 96, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(96, 64, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()),
            nn.AdaptiveMaxPool2d(6),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Sequential(nn.Linear(64 * 6 * 6, 256), nn.ReLU()),
            nn.Dropout(dropout),
            nn.Sequential(nn.Linear(256, 128), nn.ReLU()),
            nn.Linear(128, num_classes),
        )
