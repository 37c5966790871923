"""The seed presets are the seeds' own networks: each original model class (transcribed from its `source`)
given the preset's weights computes the same outputs on the same images."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data import MEAN, STD
from cnnlab.models import build_model
from cnnlab.presets import get_preset


class Seed001Net(nn.Module):  # abhilashreddyy/LearnDeepLearning S6-Assignment-Solution/Part-2
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3); self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, kernel_size=3); self.bn2 = nn.BatchNorm2d(24)
        self.conv2_1 = nn.Conv2d(24, 16, kernel_size=1); self.bn2_1 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 20, kernel_size=3, padding=1); self.bn3 = nn.BatchNorm2d(20)
        self.conv4 = nn.Conv2d(20, 25, kernel_size=3); self.bn4 = nn.BatchNorm2d(25)
        self.conv4_1 = nn.Conv2d(25, 19, kernel_size=1); self.bn4_1 = nn.BatchNorm2d(19)
        self.conv5 = nn.Conv2d(19, 29, kernel_size=3); self.bn5 = nn.BatchNorm2d(29)
        self.conv6 = nn.Conv2d(29, 10, kernel_size=3)
        self.dropout = nn.Dropout2d(p=0.1)

    def forward(self, x):
        x = self.dropout(F.relu(self.bn1(self.conv1(x))))
        x = self.dropout(F.relu(self.bn2(self.conv2(x))))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2_1(self.conv2_1(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.relu(self.bn4(self.conv4(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn4_1(self.conv4_1(x)))
        x = F.relu(self.bn5(self.conv5(x)))
        return F.log_softmax(self.conv6(x).view(-1, 10), dim=1)


class Seed002Net(nn.Module):  # gregoryoffodum/MNIST-classification-using-Convolutional-Neural-Network
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5, stride=1, padding=1)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5, stride=1, padding=1)
        self.fc1 = nn.Linear(500, 50)
        self.out = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return self.out(x)


class Seed003Net(nn.Module):  # prajnaraipn7/Era_Assignment_S5 model.py
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, bias=False)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, bias=False)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, bias=False)
        self.conv4 = nn.Conv2d(128, 256, kernel_size=3, bias=False)
        self.fc1 = nn.Linear(4096, 50, bias=False)
        self.fc2 = nn.Linear(50, 10, bias=False)

    def forward(self, x):
        x = F.relu(self.conv1(x), 2)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.conv3(x), 2)
        x = F.relu(F.max_pool2d(self.conv4(x), 2))
        x = F.relu(self.fc1(x.view(-1, 4096)))
        return F.log_softmax(self.fc2(x), dim=1)


class Seed000Net(nn.Module):  # AGNISH13/Creating-a-CNN-architecture-from-scratch Others/CNN_architecture.py
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 7, 2); self.bn1 = nn.BatchNorm2d(64); self.pool = nn.MaxPool2d(2, 2)
        self.conv1_incp = nn.Conv2d(64, 64, 1, padding="same")
        self.conv2_incp = nn.Conv2d(64, 64, 3, padding="same")
        self.conv3_incp = nn.Conv2d(64, 64, 5, padding="same")
        self.pool_incp = nn.MaxPool2d(3, 1); self.pad_incp = nn.ConstantPad2d((1, 1, 1, 1), 0)
        self.conv2 = nn.Conv2d(256, 512, 5, 1, padding="same"); self.bn2 = nn.BatchNorm2d(512)
        self.conv3 = nn.Conv2d(512, 512, 3, 1, padding="same")
        self.pad1 = nn.ConstantPad2d((2, 3, 2, 3), 0); self.pad2 = nn.ConstantPad2d((1, 2, 1, 2), 0)
        self.pad3 = nn.ConstantPad2d((0, 1, 0, 1), 0)
        self.fc1 = nn.Linear(32768, 1024); self.fc2 = nn.Linear(1024, 512); self.fc3 = nn.Linear(512, 10)

    def forward(self, x):  # eval mode: the dropouts are identities
        x = self.pool(self.bn1(F.relu(self.conv1(self.pad1(x)))))
        o1 = F.relu(self.conv1_incp(x))
        o2 = F.relu(self.conv2_incp(o1))
        o3 = F.relu(self.conv3_incp(o1))
        o4 = F.relu(self.conv1_incp(self.pool_incp(self.pad_incp(x))))
        x = self.pool(torch.cat([o1, o2, o3, o4], dim=1))
        x = self.pool(self.bn2(F.relu(self.conv2(self.pad2(x)))))
        x = self.pool(self.bn2(F.relu(self.conv3(self.pad3(x)))))
        x = self.bn2(F.relu(self.conv3(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


def _copy_in_order(lab: nn.Module, orig: nn.Module) -> None:
    """Give `orig` the lab model's weights, tensor by tensor in definition order (shapes must agree)."""
    src, dst = list(lab.state_dict().values()), orig.state_dict()
    assert len(src) == len(dst), (len(src), len(dst))
    for (k, v), s in zip(dst.items(), src):
        assert v.shape == s.shape, k
        dst[k] = s
    orig.load_state_dict(dst)


def _randomize_bn_stats(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)


@pytest.mark.parametrize("name,orig_cls,pixel_max", [
    ("seed001", Seed001Net, None),  # Normalize((0.1307,), (0.3081,)), as the lab feeds every model
    ("seed002", Seed002Net, 255.0),  # raw 0..255 floats
    ("seed003", Seed003Net, None),
])
def test_preset_computes_what_the_original_class_computes(name, orig_cls, pixel_max, mnist):
    lab = build_model(get_preset(name).spec, seed=3).eval()
    _randomize_bn_stats(lab)
    orig = orig_cls().eval()
    _copy_in_order(lab, orig)
    u8 = mnist.test_x[:16].float().unsqueeze(1)
    lab_in = (u8 / 255 - MEAN) / STD
    orig_in = lab_in if pixel_max is None else u8 / 255 * pixel_max
    with torch.no_grad():
        assert torch.allclose(lab(lab_in), orig(orig_in), atol=1e-4, rtol=1e-4)


def test_seed000_computes_what_the_original_class_computes(mnist):
    lab = build_model(get_preset("seed000").spec, seed=3).eval()
    _randomize_bn_stats(lab)
    orig = Seed000Net().eval()
    _copy_in_order(lab, orig)  # shared conv1_incp, conv3 and bn2 appear once in both state dicts
    u8 = mnist.test_x[:2].float().unsqueeze(1)
    lab_in = (u8 / 255 - MEAN) / STD
    orig_in = F.interpolate(u8 / 255, size=(224, 224), mode="bilinear", align_corners=False)  # Resize + ToTensor
    with torch.no_grad():
        assert torch.allclose(lab(lab_in), orig(orig_in), atol=1e-3, rtol=1e-3)
