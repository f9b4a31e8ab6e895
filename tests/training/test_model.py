"""The sanity trainer's model (augpipe/training/model.py): the architecture grammar, its layer table and
memory, and `augpipe shape`. Needs the train extra."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from augpipe.training.model import DEFAULT_ARCH, ArchError, build_model, layer_table, memory_bytes  # noqa: E402
from augpipe.training.run import check_memory  # noqa: E402
from conftest import one_line  # noqa: E402


@pytest.mark.parametrize("arch, size", [
    ("c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-d0.3-c{classes}k1-gap", 32),
    ("c8k5s1p2-r-m2-c16k4s2p1-r-c{classes}k1-gap", 32),
    ("c8k3psame-r-a2-c16k3-r-c{classes}k1-gmp", 28),
    ("c4k7s3-r-c{classes}k1-gap", 64),
    ("c8k3p1-r-l2-c16k3-r-l3s1-c{classes}k1-gap", 16),
])
def test_layer_table_equals_real_tensor_shapes(arch, size):
    model = build_model(arch, size, 5)  # also checks itself against a forward pass
    x = torch.zeros(2, 3, size, size)
    for row, module in zip(layer_table(arch, size, 5), model):
        x = module(x)
        assert tuple(x.shape[1:]) == (row.channels, row.size, row.size)


@pytest.mark.parametrize("arch, size, message", [
    ("c8k3p1-r-c16k5s2p0-r-c{classes}k1-gap", 14, "conv2: (14 − 5 + 2·0)/2 + 1 = 5.5 is not a whole number: use kernel 4, or stride 1"),
    ("c8k5s3p0-r-c{classes}k1-gap", 13, "conv1: (13 − 5 + 2·0)/3 + 1 = 3.66667 is not a whole number: use padding 2, or kernel 4, or stride 1"),
    ("c8k3-r-m2-c{classes}k1-gap", 31, "maxpool1: (29 − 2 + 2·0)/2 + 1 = 14.5 is not a whole number"),
    ("c8k9-r-c8k9-r-c{classes}k1-gap", 12, "conv2: (4 − 9 + 2·0)/1 + 1 = -4 is below 1"),
    ("c8k3p1-r-c7k1-gap", 8, "gives 7 channels for 5 classes"),
    ("c8k3p1-r-x3-gap", 8, "'x3' is not a layer"),
    # the image's 3 channels as 3 classes: nothing to learn (the optimiser's empty list, exit 3; a hostile tester's)
    ("gap", 8, "--arch gap: no layer has weights to learn"),
])
def test_bad_architectures_are_refused_with_the_arithmetic(arch, size, message):
    with pytest.raises(ArchError) as info:
        layer_table(arch, size, 3 if arch == "gap" else 5)
    assert message in str(info.value)


def test_dropout_is_off_in_evaluation():
    model = build_model("c8k3p1-r-d0.5-c{classes}k1-gap", 16, 3)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_shape_command(cli):
    bad = cli("shape", "--arch", "c16k5s1p2-r-m2-c32k3s2p0", "--size", "32")
    assert bad.exit_code == 2 and "conv2: (16 − 3 + 2·0)/2 + 1 = 7.5 is not a whole number" in bad.output
    good = cli("shape", "--arch", "c16k5s1p2-r-m2-c32k4s2p1", "--size", "32")
    assert good.exit_code == 0 and "32×8×8" in good.output and "(16 − 4 + 2·1)/2 + 1 = 8" in good.output
    table = cli("shape", "--size", "32", "--classes", "4")
    assert table.exit_code == 0 and "4×1×1" in table.output and "total" in table.output


def test_same_padding_keeps_the_size():
    rows = layer_table("c8k5p=same-r-c8k3psame-r-c{classes}k1-gap", 20, 2)
    assert [r.size for r in rows[:4]] == [20, 20, 20, 20]
    with pytest.raises(ArchError, match="odd kernel and stride 1"):
        layer_table("c8k4psame-c{classes}k1-gap", 20, 2)


def test_train_help_documents_the_grammar(cli):
    text = " ".join(cli("train", "--help").output.split())
    for needle in ("cNkK", "sS", "psame", "mK / aK", "dP dropout", "gap / gmp", "{classes}", "O = (W − K + 2P)/S + 1"):
        assert needle in text, needle


def test_the_default_model_fits_this_machine():
    check_memory(layer_table(DEFAULT_ARCH, 32, 10), 32, 64, torch.device("cpu"), 1_000)


def test_shape_shows_the_memory(cli):
    result = cli("shape", "--batch-size", "128")
    assert result.exit_code == 0 and "memory: about 52 MB for a batch of 128" in result.output
    assert "memory: about 26 MB for a batch of 64" in cli("shape").output


def test_l2_pooling_in_the_layer_table():
    rows = layer_table("c4k3-r-l3s2-c{classes}k1-gap", 17, 2)
    assert rows[2].layer.name == "l2pool1" and rows[2].layer.kind == "l2pool"
    assert (rows[2].channels, rows[2].size, rows[2].params) == (4, 7, 0)
    assert rows[2].arithmetic == "(15 − 3 + 2·0)/2 + 1 = 7"
    with pytest.raises(ArchError, match=r"l2pool1: \(15 − 2 \+ 2·0\)/2 \+ 1 = 7.5 is not a whole number"):
        layer_table("c4k3-r-l2-c{classes}k1-gap", 17, 2)
    model = build_model("c4k3-r-l3s2-c{classes}k1-gap", 17, 2)  # checks the table against torch
    assert isinstance(model[2], torch.nn.LPPool2d)
    pool = build_model("l2-c{classes}k1-gap", 2, 1)[0]
    x = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]]]).expand(1, 3, 2, 2)
    assert pool(x)[0, 0, 0, 0].item() == pytest.approx(5.0)  # √(3² + 4²)
    assert memory_bytes(rows, 17, 8) > memory_bytes(layer_table("c4k3-r-m3s2-c{classes}k1-gap", 17, 2), 17, 8) - 8 * 8 * 4 * 49


def test_help_shows_each_task_s_default_architecture(cli):
    from augpipe.training.model import DEFAULT_ARCHS, DEFAULT_SIZES

    text = "".join(cli("train", "--help").output.replace("│", " ").split())
    for task, arch in DEFAULT_ARCHS.items():
        assert arch in text, task
    assert DEFAULT_SIZES == {"classification": 32, "localisation": 64, "detection": 64, "segmentation": 64}


def test_shape_shows_a_task_s_heads(cli):
    result = cli("shape", "--task", "detection", "--size", "64", "--classes", "3")
    assert result.exit_code == 0 and "heatmap" in result.output and "3×16×16" in result.output
    seg = cli("shape", "--task", "segmentation", "--size", "64", "--classes", "4", "--arch", "c8k3p1-r-l2-c8k3p1-r")
    assert seg.exit_code == 0 and "l2pool1" in seg.output and "bilinear 32×32 → 64×64" in seg.output
    bad = cli("shape", "--task", "localisation", "--arch", DEFAULT_ARCH)
    assert bad.exit_code == 2 and "gap: localisation needs the feature map" in bad.output


@pytest.mark.parametrize("pool", ["m0", "a0", "l0", "m2s0"])
def test_a_pooling_window_or_stride_of_zero_is_one_line(cli, colours, tmp_path, pool):
    arch = f"c16k3p1-r-{pool}-c{{classes}}k1-gap"
    for args in (("shape", "--arch", arch), ("train", colours, "--arch", arch, "--out", tmp_path / "run", "-q")):
        result = cli(*args)
        assert result.exit_code == 2
        assert f"'{pool}': a pooling window and its stride must be at least 1" in one_line(result.output)
    assert not (tmp_path / "run").exists()
