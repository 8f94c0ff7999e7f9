import pytest
import torch
from torchvision.models import VGG16_BN_Weights

from skunet.models import UNet, VGG16UNet, get_model


def n_params(module):
    return sum(p.numel() for p in module.parameters())


class TestUNet:
    @pytest.mark.parametrize("size", [(16, 16), (32, 48), (64, 80)])
    def test_same_padding_keeps_size(self, size):
        net = UNet(in_channels=2, out_channels=3, depth=3, base_channels=4)
        assert net(torch.zeros(1, 2, *size)).shape == (1, 3, *size)

    def test_seed_exercise_network(self):
        # 64-base, depth 4, ReLU, transposed convolutions: the classic U-Net
        net = UNet()
        assert net(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
        assert isinstance(net.up[0].up, torch.nn.ConvTranspose2d)
        assert net.down[0][0].out_channels == 64 and net.bottom[0].out_channels == 1024

    def test_valid_padding_572_to_388(self):
        net = UNet(padding="valid", base_channels=4)
        assert net.output_shape((572, 572)) == (388, 388)
        assert net(torch.zeros(1, 1, 572, 572)).shape == (1, 1, 388, 388)

    def test_valid_padding_output_shape_matches_forward(self):
        net = UNet(padding="valid", depth=2, base_channels=2)
        for n in (44, 48, 60):
            out = net(torch.zeros(1, 1, n, n)).shape[-2:]
            assert tuple(out) == net.output_shape((n, n))

    def test_output_shape_error_names_valid_sizes(self):
        net = UNet(padding="valid")
        with pytest.raises(ValueError, match=r"input height 570 .* use 556 or 572"):
            net.output_shape((570, 572))
        with pytest.raises(ValueError, match="use 48 or 64"):
            UNet(depth=4).output_shape((50, 64))

    def test_blood_cell_lab_network(self):
        # the lab's Keras U-Net: ELU, base 16, dropout .1/.1/.2/.2/.3, He-normal
        net = UNet(3, 1, base_channels=16, activation="elu", dropout=[0.1, 0.1, 0.2, 0.2, 0.3])
        assert n_params(net) == 1_941_105
        assert isinstance(net.down[0][1], torch.nn.ELU)
        dropouts = [m.p for m in net.bottom if isinstance(m, torch.nn.Dropout2d)]
        assert dropouts == [0.3]
        assert [b.block[2].p for b in net.up] == [0.2, 0.2, 0.1, 0.1]
        w = net.down[0][0].weight  # He-normal: std = sqrt(2 / fan_in)
        assert abs(w.std().item() - (2 / (3 * 9)) ** 0.5) < 0.05

    def test_batch_norm_and_bilinear(self):
        net = UNet(depth=2, base_channels=4, batch_norm=True, up_mode="bilinear")
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
        assert net(torch.zeros(2, 1, 8, 12)).shape == (2, 1, 8, 12)

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"padding": "full"}, "padding='full'"),
            ({"activation": "gelu"}, "activation='gelu'"),
            ({"up_mode": "nearest"}, "up_mode='nearest'"),
            ({"dropout": [0.1, 0.2]}, "one value per level"),
            ({"dropout": 1.5}, r"\[0, 1\)"),
            ({"depth": 0}, "depth"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            UNet(**kwargs)

    def test_no_parameter_is_named_like_the_vgg_encoder(self):
        # Freezer("conv*") must not freeze a plain UNet
        assert not any(name.startswith("conv") for name, _ in UNet(depth=2).named_parameters())


class TestVGG16UNet:
    def test_encoder_parameters_are_named_conv(self):
        net = VGG16UNet()
        names = [n for n, _ in net.named_parameters()]
        encoder = [n for n in names if n.startswith("conv")]
        assert len(encoder) == 13 * 4  # 13 conv + batch-norm pairs, weight and bias each
        assert net(torch.zeros(1, 3, 64, 96)).shape == (1, 1, 64, 96)

    @pytest.mark.parametrize("in_channels", [1, 2, 4])
    def test_any_input_channels(self, in_channels):
        net = VGG16UNet(in_channels=in_channels, out_channels=3)
        assert net(torch.zeros(1, in_channels, 32, 32)).shape == (1, 3, 32, 32)

    def test_pretrained_weights_load_from_torch_home_cache(self, vgg_weights_cache):
        state = vgg_weights_cache
        net = VGG16UNet(in_channels=3, weights="IMAGENET1K_V1")
        torch.testing.assert_close(net.conv1[0].weight, state["features.0.weight"])
        torch.testing.assert_close(net.conv5[1].weight, state["features.34.weight"])
        torch.testing.assert_close(net.conv3[2].running_mean, state["features.15.running_mean"])
        assert net.input_mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])

        gray = VGG16UNet(in_channels=1, weights=VGG16_BN_Weights.IMAGENET1K_V1)
        torch.testing.assert_close(
            gray.conv1[0].weight, state["features.0.weight"].sum(1, keepdim=True)
        )
        assert gray(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)

    def test_unknown_weights_name(self):
        with pytest.raises(ValueError):
            VGG16UNet(weights="IMAGENET9000")


def test_registry_lists_valid_names():
    assert get_model("vgg16_unet") is VGG16UNet
    with pytest.raises(ValueError, match=r"\['unet', 'vgg16_unet'\]"):
        get_model("resnet")
