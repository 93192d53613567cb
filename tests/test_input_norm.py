"""uint8 clips until the model: the model's ``InputNormalize`` gives the numbers the float
pipelines (``ToDtype`` + ``Normalize`` in the DataLoader workers) gave before."""
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from datasets.action_transforms import AsVideo, build_action_transform
from datasets.transforms import build_reid_transform, mean_colour
from models.heads import build_aggregator
from models.input_norm import IMAGENET_MEAN, IMAGENET_STD, InputNormalize
from models.video_net import VideoClassifier, VideoReIDNet

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def float_chain(mean=MEAN, std=STD):
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def test_input_normalize_equals_to_dtype_and_normalize():
    x = torch.randint(0, 256, (2, 3, 5, 9, 7), dtype=torch.uint8)
    want = float_chain()(x.transpose(1, 2)).transpose(1, 2)                # v2 normalises (..., C, H, W)
    got = InputNormalize(MEAN, STD)(x)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    assert torch.equal(InputNormalize(MEAN, STD)(x[0]), got[0])           # one clip (C, T, H, W)
    # a hand value: 255 in channel 0 -> (1 - 0.4) / 0.2 = 3, 0 in channel 2 -> -0.6 / 0.3 = -2
    one = torch.zeros(1, 3, 1, 1, 1, dtype=torch.uint8)
    one[0, 0] = 255
    torch.testing.assert_close(InputNormalize(MEAN, STD)(one).flatten(), torch.tensor([3.0, -2.0, -2.0]))


def test_input_normalize_passes_floats_and_rejects_other_input():
    norm = InputNormalize()
    x = torch.randn(2, 3, 4, 8, 8)
    assert norm(x) is x
    with pytest.raises(TypeError, match="uint8"):
        norm(torch.zeros(1, 3, 2, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="C = 3"):
        norm(torch.zeros(1, 4, 2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="std > 0"):
        InputNormalize((0.5, 0.5, 0.5), (0.2, 0.0, 0.2))
    assert "mean=[0.485, 0.456, 0.406]" in repr(norm)


def test_normalisation_is_not_in_checkpoints():
    net = VideoClassifier(torch.nn.Conv3d(3, 4, 1), build_aggregator("avg", 4, 2), 5, mean=MEAN, std=STD)
    assert not any(key.startswith("normalize") for key in net.state_dict())


class Frames(torch.nn.Module):
    """A stand-in backbone: the (normalised) input itself as the frame maps."""

    out_channels = 3

    def forward(self, x):
        self.seen = x
        return x


@pytest.mark.parametrize("net", ["reid", "action"])
def test_models_normalise_uint8_clips_on_their_input(net):
    backbone = Frames()
    agg = build_aggregator("avg", 3, 2)
    model = (VideoReIDNet(backbone, agg, 4, mean=MEAN, std=STD) if net == "reid"
             else VideoClassifier(backbone, agg, 4, mean=MEAN, std=STD)).eval()
    clips = torch.randint(0, 256, (2, 3, 2, 6, 4), dtype=torch.uint8)
    out = model(clips)
    by_hand = (clips.float() / 255 - torch.tensor(MEAN).view(3, 1, 1, 1)) / torch.tensor(STD).view(3, 1, 1, 1)
    torch.testing.assert_close(backbone.seen, by_hand, atol=2e-6, rtol=0)
    torch.testing.assert_close(model(by_hand), out, atol=1e-5, rtol=0)     # float input: already normalised


def old_reid_transform(height, width, train, flip_prob=0.5, padding=10, erasing_prob=0.5):
    """The float pipeline the workers ran before: erasing wrote 0 into the normalised clip."""
    ops = [v2.Resize((height, width), antialias=True)]
    if train:
        ops += [v2.RandomHorizontalFlip(flip_prob), v2.Pad(padding), v2.RandomCrop((height, width))]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        ops.append(v2.RandomErasing(erasing_prob, value=0))
    return v2.Compose(ops)


@pytest.mark.parametrize("train", [True, False])
def test_reid_uint8_pipeline_equals_the_old_float_one(train):
    frames = torch.randint(0, 256, (4, 3, 40, 20), dtype=torch.uint8)
    new = build_reid_transform(32, 16, train, padding=4, erasing_prob=1.0)
    old = old_reid_transform(32, 16, train, 0.5, 4, 1.0)
    norm = InputNormalize()
    erased_somewhere = False
    for seed in range(6):
        torch.manual_seed(seed)
        got = new(frames)
        assert got.dtype == torch.uint8 and got.shape == (3, 4, 32, 16)
        got = norm(got)
        torch.manual_seed(seed)
        want = old(frames).transpose(0, 1)
        differs = (got - want).abs() > 1e-5
        erased = (want == 0).all(0, keepdim=True).expand_as(want)            # the old fill
        erased_somewhere |= bool(erased.any())
        assert not (differs & ~erased).any()                                 # identical outside the erased box
        gap = (got - want)[erased].abs()
        assert gap.numel() == 0 or float(gap.max()) < 0.5 / (255 * min(IMAGENET_STD))
    assert erased_somewhere == train
    assert mean_colour(IMAGENET_MEAN) == [124.0, 116.0, 104.0]


@pytest.mark.parametrize("train, mode, crops", [(True, "multiscale", 1), (True, "random_resized", 1),
                                                (False, "multiscale", 1), (False, "multiscale", 3)])
def test_action_uint8_pipeline_equals_the_old_float_one(train, mode, crops):
    transform = build_action_transform(train, crop_size=24, short_side=32, mode=mode, num_crops=crops)
    ops = transform.transforms
    old = v2.Compose(ops[:-1] + [float_chain(IMAGENET_MEAN, IMAGENET_STD)])  # the float tail the workers ran
    frames = torch.randint(0, 256, (2, 6, 3, 36, 48), dtype=torch.uint8)    # two views
    for seed in range(3):
        torch.manual_seed(seed)
        got = transform(frames)
        torch.manual_seed(seed)
        want = old(frames).as_subclass(torch.Tensor).transpose(-4, -3)
        assert got.dtype == torch.uint8 and got.shape == want.shape
        torch.testing.assert_close(InputNormalize()(got), want, atol=2e-6, rtol=0)
    assert isinstance(ops[0], AsVideo) and isinstance(AsVideo()(frames), tv_tensors.Video)


def test_build_model_takes_mean_and_std_from_the_config():
    import os
    from engine.build import build_model
    from engine.config import load_config
    base = os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml")
    cfg = load_config(base, ["MODEL.BACKBONE.NAME", "resnet18", "DATA.MEAN", "[0.4, 0.5, 0.6]",
                             "DATA.STD", "[0.2, 0.25, 0.3]", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg, 3)
    clips = torch.randint(0, 256, (1, 3, 2, 8, 4), dtype=torch.uint8)
    torch.testing.assert_close(model.normalize(clips), InputNormalize(MEAN, STD)(clips))
