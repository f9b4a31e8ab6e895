"""Each kind's arrays: row -> arrays -> state -> arrays, and the torch forms."""

import numpy as np
import pytest
import torch

from augpipe.targets import check_choices, kind_for
from augpipe.targets.boxes import box_problem

W, H = 40, 30


def _state(name, kind):
    return 1 if name == "classification" else kind.example(W, H)


@pytest.mark.parametrize("name", sorted(check_choices()))
def test_arrays_state_arrays_round_trip(name):
    kind = check_choices()[name]
    image = np.zeros((H, W, 3), np.uint8)
    row = {**kind.values(_state(name, kind), image), "width": W, "height": H}
    arrays = kind.arrays(row)
    again = kind.to_arrays(kind.from_arrays(arrays, image.shape), image.shape)
    assert arrays.keys() == again.keys()
    for key in arrays:
        assert np.array_equal(arrays[key], again[key]), key


def test_torch_targets():
    label = kind_for("classification")
    assert label.torch_target({"label": 3}, "xyxy", "augpipe") == 3

    boxes = {"boxes": np.array([[1, 2, 10, 5]], np.float32), "labels": np.array([0])}
    detection = kind_for("detection")
    xyxy = detection.torch_target(boxes, "xyxy", "augpipe")
    assert xyxy["boxes"].tolist() == [[1, 2, 11, 7]] and xyxy["labels"].tolist() == [0] and "masks" not in xyxy
    assert detection.torch_target(boxes, "xywh", "augpipe")["boxes"].tolist() == [[1, 2, 10, 5]]
    assert detection.torch_target(boxes, "xyxy", "torchvision")["labels"].tolist() == [1]
    masks = kind_for("detection", instance_masks=True).torch_target(
        {**boxes, "masks": np.ones((1, H, W), np.uint8)}, "xyxy", "augpipe")["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (1, H, W)

    mask = kind_for("segmentation").torch_target({"mask": np.full((H, W), 2, np.uint8)}, "xyxy", "augpipe")
    assert mask.dtype == torch.int64 and mask.shape == (H, W) and int(mask[0, 0]) == 2


def test_a_user_target_goes_to_arrays_and_back_in_its_own_layout():
    detection = kind_for("detection")
    target = {"boxes": torch.tensor([[1.0, 2.0, 11.0, 7.0], [0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([2, 0]),
              "area": torch.tensor([50.0, 16.0])}
    arrays, restore = detection.from_user_target(target, (H, W, 3), "xyxy", "augpipe")
    assert arrays["boxes"].tolist() == [[1, 2, 10, 5], [0, 0, 4, 4]] and arrays["ids"].tolist() == [0, 1]
    kept = {"boxes": arrays["boxes"][1:], "labels": arrays["labels"][1:], "ids": arrays["ids"][1:]}
    back = restore(kept)
    assert back["boxes"].tolist() == [[0, 0, 4, 4]] and back["labels"].tolist() == [0]
    assert back["area"].tolist() == [16.0] and back["area"].dtype == torch.float32

    segmentation = kind_for("segmentation")
    arrays, restore = segmentation.from_user_target(torch.full((H, W), 3, dtype=torch.int64), (H, W, 3), "xyxy",
                                                    "augpipe")
    assert arrays["mask"].dtype == np.uint8 and restore(arrays).dtype == torch.int64
    with pytest.raises(ValueError, match="0 to 255"):
        segmentation.from_user_target(np.full((H, W), 300), (H, W, 3), "xyxy", "augpipe")


def test_one_box_check():
    assert box_problem((0, 0, 10, 10), (10, 10)) is None
    assert box_problem((-1, -1, 11, 11), (10, 10)) is None  # within EDGE: clipped, not refused
    assert box_problem((-1.5, 0, 5, 5), (10, 10)) == "outside the 10×10 image"
    assert box_problem((0, 0, 0, 5)) == "width ≤ 0"
    assert box_problem((0, 0, 5, -1)) == "height ≤ 0"
    assert box_problem((float("nan"), 0, 5, 5), (10, 10)) == "not a number"
    assert box_problem((0, 0, 1e9, 5)) is None  # no image size: no edge to be over


def test_boxes_checked_in_python_floats_refuse_and_clip_as_numpy_did():
    """`_checked` asks box_problem of each box as Python floats and clips the corners in one call:
    the first refusal and its message as with numpy's scalars, and the boxes clipped as four
    clips did, bit for bit (signed zeros too)."""
    from augpipe.errors import SkipInput
    from augpipe.targets.boxes import EDGE, _checked

    rng = np.random.default_rng(5)
    edges = [0.0, -EDGE, -EDGE - 1e-9, 10 + EDGE, 10 + EDGE + 1e-9, np.nan, np.inf, -np.inf, -0.0]
    refused = 0
    for _ in range(3000):
        boxes = rng.uniform(-3, 13, (int(rng.integers(0, 6)), 4))
        boxes[rng.random(boxes.shape) < 0.08] = rng.choice(edges)
        boxes[:, 2:] = np.where(rng.random((len(boxes), 2)) < 0.05, -boxes[:, 2:], boxes[:, 2:])
        boxes[:, :2][rng.random((len(boxes), 2)) < 0.05] = -0.0
        first = next(((k, why) for k, box in enumerate(boxes) if (why := box_problem(box, (10, 10)))), None)
        if first is None:
            x0, y0 = np.clip(boxes[:, 0], 0, 10), np.clip(boxes[:, 1], 0, 10)
            x1, y1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, 10), np.clip(boxes[:, 1] + boxes[:, 3], 0, 10)
            before = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1) if len(boxes) else boxes
            assert _checked(boxes, (10, 10)).tobytes() == before.tobytes()
            continue
        refused += 1
        k, why = first
        with pytest.raises(SkipInput) as caught:
            _checked(boxes, (10, 10))
        assert caught.value.reason == f"box {k} [{', '.join(f'{v:.1f}' for v in boxes[k])}]: {why}"
    assert 300 < refused < 2900


def test_a_box_is_kept_when_it_has_size_to_a_thousandth_of_a_pixel_as_numpy_rounds():
    """`outputs` keeps a box whose width and height round (np.round, 3 decimals) above 0; asked in
    Python floats as w * 1000 > 0.5. The two agree at the rounding edge, and on zeros, negative
    sizes, infinities and not-numbers."""
    edge = [0.0005, np.nextafter(0.0005, 1), np.nextafter(0.0005, 0), 0.0015, 0.0, -0.0, -0.001, 1e-300,
            np.inf, -np.inf, np.nan, 0.00049999999999999, 0.000500000000000001, 3.2]
    rng = np.random.default_rng(0)
    values = np.concatenate([edge, rng.uniform(0, 0.002, 5000), rng.uniform(-1, 1, 1000)])
    with np.errstate(invalid="ignore"):
        numpy_rule = np.round(values, 3) > 0
    assert [v * 1000.0 > 0.5 for v in values.tolist()] == numpy_rule.tolist()
    kind = kind_for("detection")
    state = kind.example(40, 30)
    boxes = np.array([[1, 1, 5, 5], [2, 2, 0.0004, 5], [3, 3, 5, 0.0006], [4, 4, np.nan, 1]], float)
    result = {"bboxes": boxes, "keys": [0, 0, 0, 0], "categories": [1, 2, 3, 4]}
    assert kind.outputs(result, state).categories.tolist() == [1, 3]
