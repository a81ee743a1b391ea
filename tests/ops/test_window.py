import numpy as np
import pytest

from stengine.grid import Grid
from stengine.ops.window import Window
from tests import reference_focal as ref


@pytest.mark.parametrize("spec, shape", [
    (3, (1, 3, 3)), ("5x7", (1, 5, 7)), ("3X5", (1, 3, 5)), ("1x1", (1, 1, 1)),
    ((5, 3), (1, 5, 3)), ((3, 5, 5), (3, 5, 5)), ("3x5x7", (3, 5, 7)), ("7", (1, 7, 7)),
    ([3, 9], (1, 3, 9)),
])
def test_parse_rectangles(spec, shape):
    w = Window.parse(spec)
    assert w.shape == shape
    assert w.halo == tuple(s // 2 for s in shape)
    assert w.is_rectangle and w.size == np.prod(shape)
    assert w.has_time == (shape[0] > 1)


@pytest.mark.parametrize("spec, what", [
    (4, "along y"), ("4x4", "along y"), ((3, 4), "along x"), ("2x3x3", "along time"),
    ((2, 3, 3), "along time"), (np.ones((3, 4)), "along x"), (0, ">= 1"),
])
def test_even_or_empty_sizes_are_rejected(spec, what):
    with pytest.raises(ValueError, match=what):
        Window.parse(spec)


@pytest.mark.parametrize("spec", ["3x", "axb", "3x3x3x3", (3,), (1, 3, 3, 3), 2.5, True, None])
def test_unparseable(spec):
    with pytest.raises((TypeError, ValueError), match="window"):
        Window.parse(spec)


def test_even_message_names_spec_and_fix():
    with pytest.raises(ValueError) as e:
        Window.parse("4x3")
    assert "'4x3'" in str(e.value) and "Use 3 or 5" in str(e.value)


@pytest.mark.parametrize("r", [0, 1, 1.5, 2, 2.5, 3])
def test_circle_matches_reference(r):
    w = Window.circle(r)
    np.testing.assert_array_equal(w.footprint, ref.circle(r))
    assert w.halo == (0, int(r), int(r))
    assert w.is_rectangle == (r in (0, 1.5))


@pytest.mark.parametrize("inner, outer", [(1, 2), (0, 2), (1.5, 3), (2, 2)])
def test_annulus_matches_reference(inner, outer):
    np.testing.assert_array_equal(Window.annulus(inner, outer).footprint,
                                  ref.annulus(inner, outer))


def test_annulus_excludes_centre_and_validates():
    w = Window.annulus(1, 2)
    assert not w.footprint[0, 2, 2] and w.footprint[0, 2, 3]
    with pytest.raises(ValueError, match="inner <= outer"):
        Window.annulus(3, 2)
    with pytest.raises(ValueError, match=">= 0"):
        Window.circle(-1)
    with pytest.raises(ValueError, match="units"):
        Window.circle(2, units="km")
    with pytest.raises(ValueError, match="no cell centre"):
        Window.annulus(0.2, 0.5)


def test_time_extent():
    w = Window.circle(1, time=3)
    assert w.shape == (3, 3, 3) and w.halo == (1, 1, 1) and w.size == 15
    assert Window.parse((3, 5, 5)).has_time


def test_from_array_weights_and_bool():
    k = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    w = Window.parse(k)
    assert w.kind == "array" and w.size == 5 and not w.is_rectangle
    offs, wts = w.offsets()
    assert offs.tolist() == [[0, 0, 1], [0, 1, 0], [0, 1, 1], [0, 1, 2], [0, 2, 1]]
    assert wts.tolist() == [1, 1, -4, 1, 1]
    b = Window.from_array(np.ones((3, 5), bool))
    assert b.is_rectangle and b.shape == (1, 3, 5)
    with pytest.raises(ValueError, match="finite"):
        Window.from_array(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="no non-zero"):
        Window.from_array(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        Window.from_array(np.ones(3))


def test_runs_cover_the_footprint():
    w = Window.annulus(1, 2, time=3)
    fp = np.zeros(w.shape, bool)
    for t, y, a, b in w.runs():
        assert not fp[t, y, a:b].any()
        fp[t, y, a:b] = True
    np.testing.assert_array_equal(fp, w.footprint)
    assert len(w.runs()) == 3 * (1 + 1 + 2 + 1 + 1)  # the centre row of the ring splits in two


def test_frozen_hashable_equal():
    assert Window.parse(3) == Window.parse("3x3") == Window.rectangle(3, 3)
    assert hash(Window.parse(3)) == hash(Window.rectangle(3))
    assert Window.parse(3) != Window.parse("3x5")
    assert len({Window.parse(3), Window.parse("3x3"), Window.circle(1)}) == 2
    with pytest.raises(AttributeError):
        Window.parse(3).shape = (1, 5, 5)
    assert repr(Window.circle(2)) == "Window(circle(2))"


def test_map_units_resolve_with_grid():
    utm = Grid("EPSG:32633", (30, 0, 500000, 0, -10, 4000000), (50, 50))  # 30 m × 10 m cells
    w = Window.circle(60.0, units="m")
    with pytest.raises(ValueError, match="resolve"):
        _ = w.halo
    r = w.resolve(utm)
    assert r.halo == (0, 6, 2)
    np.testing.assert_array_equal(r.footprint, ref.circle(60.0, ry=10, rx=30))
    assert Window.circle(60.0, units="map").resolve(utm) == r
    assert Window.parse(3).resolve(utm) == Window.parse(3)  # cells: unchanged


def test_map_units_feet_are_converted():
    ft = Grid("EPSG:2263", (10, 0, 900000, 0, -10, 200000), (40, 40))  # NY State Plane, US ft
    r = Window.circle(31.0, units="m").resolve(ft)   # 101.7 US survey ft: 10.2 cells
    assert r.halo == (0, 10, 10)


def test_metres_on_geographic_grid_is_an_error():
    geo = Grid("EPSG:4326", (0.01, 0, 10, 0, -0.01, 50), (20, 20))
    with pytest.raises(ValueError, match="geographic .*metres and degrees"):
        Window.circle(500, units="m").resolve(geo)
    assert Window.circle(0.02, units="map").resolve(geo).halo == (0, 2, 2)  # degrees: fine
    with pytest.raises(ValueError, match="no CRS"):
        Window.circle(500, units="m").resolve(Grid(None, (1, 0, 0, 0, -1, 0), (5, 5)))
