"""Collection from real STAC items (odc-stac 0.5.3 test data): building, filters, errors."""

import json

import pandas as pd
import pytest
from shapely.geometry import box

from stengine import Collection
from stengine.datasets import stac_items_odc
from stengine.errors import IndexRangeError


@pytest.fixture(scope="module")
def files():
    return {p.name: p for p in stac_items_odc()}


@pytest.fixture(scope="module")
def site2(files):
    return Collection.from_stac(files["site2-2020_jun_jul-35MNM.geojson"])


def test_from_stac_forms(files, tmp_path):
    import pystac

    singles = [p for n, p in files.items() if n.endswith(".json")
               and json.loads(p.read_text()).get("type") == "Feature"]
    c = Collection.from_stac(singles)
    assert len(c) == len(singles) >= 8
    assert all(it.datetime.tzinfo is not None for it in c)
    s2 = Collection.from_stac(pystac.Item.from_file(str(files["S2A_28QCH_20200714_0_L2A.json"])))
    assert s2[0].id == "S2A_28QCH_20200714_0_L2A" and "B04" in s2[0].assets
    assert s2[0].get("eo:cloud_cover") == pytest.approx(2.36)
    # a static catalog written by pystac, read back from its catalog.json
    cat = pystac.Catalog("c", "test")
    fc = json.loads(files["site1-20200606-tall-strip-africa.geojson"].read_text())
    for f in fc["features"]:
        f["links"], f["collection"] = [], None  # no link to the (remote) collection
        cat.add_item(pystac.Item.from_dict(f))
    cat.normalize_and_save(str(tmp_path / "cat"), pystac.CatalogType.SELF_CONTAINED)
    c2 = Collection.from_stac(tmp_path / "cat" / "catalog.json")
    assert len(c2) == 9 and len(Collection.from_stac(cat)) == 9


def test_filters(site2):
    assert len(site2) == 13
    it = site2[0]
    lon, lat = it.geometry.representative_point().coords[0]
    assert it in list(site2.filter_point(lon, lat))
    assert len(site2.filter_point(0.0, 0.0)) == 0
    w, s, e, n = it.geometry.bounds
    assert len(site2.filter_bbox((w, s, e, n))) >= 1
    assert len(site2.filter_geometry(box(w, s, e, n).__geo_interface__)) >= 1
    june = site2.filter_date("2020-06-01", "2020-07-01")
    assert 0 < len(june) < 13 and all(i.datetime.month == 6 for i in june)
    clear = site2.filter("eo:cloud_cover", "<", 10)
    assert all(i.get("eo:cloud_cover") < 10 for i in clear)
    rest = site2.filter("eo:cloud_cover", ">=", 10)
    assert len(clear) + len(rest) == 13
    assert len(site2.filter("platform", "in", ["Sentinel-2A", "Sentinel-2B"])) == 13
    assert len(site2.filter("s2:mgrs_tile", "==", "35MNM")) == 13
    assert len(site2.filter("datetime", ">=", "2020-07-01")) == 13 - len(june)
    assert len(site2.filter_day(6, 6, by="month")) == len(june)
    srt = site2.sort("eo:cloud_cover", ascending=False)
    cc = [i.get("eo:cloud_cover") for i in srt]
    assert cc == sorted(cc, reverse=True)
    assert [i.id for i in site2.limit(3, "eo:cloud_cover")] == [i.id for i in srt][::-1][:3]
    t = site2.summary()
    assert isinstance(t, pd.DataFrame) and len(t) == 13 and "eo:cloud_cover" in t


def test_errors(site2):
    with pytest.raises(IndexRangeError, match="lon"):
        site2.filter_point(200, 0)
    with pytest.raises(IndexRangeError):
        site2.filter_bbox((0, -100, 1, 1))
    with pytest.raises(ValueError, match="'~='"):
        site2.filter("eo:cloud_cover", "~=", 1)
