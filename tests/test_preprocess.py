"""replicate.cohort.preprocess: resampling keeps physical size, subtraction channels, the documented net-input scaling."""

from __future__ import annotations

import numpy as np
import pytest

from replicate.errors import ConfigError
from replicate.cohort.preprocess import (IMAGENET_MEAN_BGR, map_coordinate, resample, resampled_shape,
                                  subtraction_channels, to_net_input)


def _disk(n, spacing, radius_mm, centre_mm):
    yy, xx = np.mgrid[0:n, 0:n]
    y, x = (yy + 0.5) * spacing, (xx + 0.5) * spacing
    return (((y - centre_mm[0]) ** 2 + (x - centre_mm[1]) ** 2) < radius_mm ** 2).astype(np.float32) * 100


@pytest.mark.parametrize("n,fov", [(350, 380.0), (448, 360.0), (350, 340.0)])
def test_resampling_keeps_the_physical_size(n, fov):
    target = 340.0 / 350
    sp = fov / n
    img = _disk(n, sp, 25.0, (fov * 0.4, fov * 0.55))
    out = resample(img, (sp, sp), target)
    m = out.shape[0]
    assert abs(m * target - fov) <= target / 2 + 1e-9                 # field of view kept to half a pixel
    area_in = (img > 50).sum() * sp * sp
    area_out = (out > 50).sum() * target * target
    assert area_out == pytest.approx(area_in, rel=0.02)              # a 25 mm disk keeps its area
    ys, xs = np.nonzero(out > 50)
    assert (ys.mean() + 0.5) * target == pytest.approx(fov * 0.4, abs=target)   # and its place
    assert (xs.mean() + 0.5) * target == pytest.approx(fov * 0.55, abs=target)


def test_map_coordinate_follows_a_marker():
    img = np.zeros((448, 448), np.float32)
    img[100, 300] = 1000
    sp, target = 360 / 448, 340 / 350
    out = resample(img, (sp, sp), target)
    nh, nw = resampled_shape((448, 448), (sp, sp), target)
    r, c = np.unravel_index(np.argmax(out), out.shape)
    assert abs(r - map_coordinate(100, 448, nh)) < 1 and abs(c - map_coordinate(300, 448, nw)) < 1


def test_resample_identity_and_leading_axes():
    x = np.random.default_rng(0).random((2, 3, 20, 30)).astype(np.float32)
    np.testing.assert_array_equal(resample(x, (1.0, 1.0), 1.0), x)
    assert resample(x, (1.0, 2.0), 0.5).shape == (2, 3, 40, 120)
    with pytest.raises(ConfigError):
        resample(x, (1, 1), 0)


def test_subtraction_channels():
    pre = np.full((2, 4, 4), 10.0)
    phases = np.stack([pre, pre + 1, pre + 2, pre + 5, pre + 9])
    sub = subtraction_channels(phases)
    assert sub.shape == (2, 3, 4, 4)
    assert list(sub[0, :, 0, 0]) == [1, 2, 5]


def test_net_input_scaling():
    p = np.zeros((2, 3, 10, 10), np.float32)
    p[1] = 1.5
    x = to_net_input(p, 16, "imagenet")
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32
    for c in range(3):   # 0 (no enhancement) -> 255/4 minus the channel mean; 1.5 and above -> 255 minus the mean
        assert x[0, c, 0, 0] == pytest.approx(255 * 0.25 - IMAGENET_MEAN_BGR[c])
        assert x[1, c, 5, 5] == pytest.approx(255 - IMAGENET_MEAN_BGR[c])
    s = to_net_input(p, 10, "scratch")
    # Caffe's DataTransformer on an 8-bit image with no mean and no scale declared: 0..255 values
    assert s[0].max() == pytest.approx(255 * 0.25) and s[1].min() == pytest.approx(255.0)
    with pytest.raises(ConfigError):
        to_net_input(p, 10, "bgr")
