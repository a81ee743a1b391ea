"""Reading items for :class:`~stengine.collection.Collection`: STAC JSON/pystac, raster files."""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

from .errors import CollectionError


def _abs_href(href: str, base: Path | None) -> str:
    if "://" in href or base is None or os.path.isabs(href):
        return href
    return str((base.parent / href).resolve())


def _item_from_dict(d: dict, base: Path | None = None):
    from shapely.geometry import box, shape

    from .collection import Item

    props = dict(d.get("properties") or {})
    geom = d.get("geometry")
    if geom:
        geometry = shape(geom)
    elif d.get("bbox"):
        geometry = box(*d["bbox"][:2], *d["bbox"][-2:]) if len(d["bbox"]) == 4 else box(
            d["bbox"][0], d["bbox"][1], d["bbox"][3], d["bbox"][4])
    else:
        raise CollectionError(f"from_stac: item {d.get('id')!r} has no geometry and no bbox")
    when = props.pop("datetime", None) or props.get("start_datetime")
    if when is None:
        raise CollectionError(f"from_stac: item {d.get('id')!r} has no datetime or "
                              "start_datetime property")
    assets = {k: _abs_href(v["href"], base) for k, v in (d.get("assets") or {}).items()
              if isinstance(v, dict) and "href" in v}
    return Item(str(d.get("id")), geometry, when, props, assets)


def _from_json(d: dict, base: Path | None):
    kind = d.get("type")
    if kind == "Feature":
        return [_item_from_dict(d, base)]
    if kind == "FeatureCollection":
        return [_item_from_dict(f, base) for f in d.get("features", [])]
    if kind in ("Catalog", "Collection"):
        out = []
        for link in d.get("links", []):
            if link.get("rel") in ("item", "child") and base is not None:
                out += _from_path(Path(_abs_href(link["href"], base)))
        return out
    raise CollectionError(f"from_stac: expected a STAC Item, ItemCollection/FeatureCollection "
                          f"or Catalog; got type={kind!r}")


def _from_path(p: Path):
    if not p.exists():
        raise FileNotFoundError(f"from_stac: no such file {str(p)!r}")
    with open(p) as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise CollectionError(f"from_stac: {str(p)!r} is not JSON: {e}") from e
    return _from_json(d, p)


def items_from_stac(source):
    """Items from pystac objects, dicts, paths, or a list of any of them."""
    if isinstance(source, (str, Path)):
        return _from_path(Path(source))
    if isinstance(source, dict):
        return _from_json(source, None)
    mod = type(source).__module__.split(".")[0]
    if mod == "pystac":
        name = type(source).__name__
        if name == "Item":
            return [_item_from_pystac(source)]
        if name == "ItemCollection":
            return [_item_from_pystac(i) for i in source]
        if hasattr(source, "get_items"):  # Catalog / Collection: every item below it
            return [_item_from_pystac(i) for i in source.get_items(recursive=True)]
    if isinstance(source, (list, tuple)):
        out = []
        for s in source:
            out += items_from_stac(s)
        return out
    raise TypeError(f"from_stac: expected pystac objects, dicts or paths; got "
                    f"{type(source).__name__}")


def _item_from_pystac(item):
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    for k, a in item.assets.items():  # pystac resolves relative hrefs itself
        d["assets"][k]["href"] = a.get_absolute_href() or a.href
    return _item_from_dict(d, None)


def _raster_footprint(path: str):
    import rasterio
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    with rasterio.open(path) as src:
        poly = box(*src.bounds)
        if src.crs is None:
            raise CollectionError(f"from_files: {path!r} has no CRS; footprints need one")
        return shape(transform_geom(src.crs, "EPSG:4326", mapping(poly), precision=-1))


def items_from_files(paths, *, datetime, band, item_id, properties):
    from .collection import Item

    if isinstance(paths, (str, Path)) and any(c in str(paths) for c in "*?["):
        paths = sorted(glob.glob(str(paths)))
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [str(p) for p in paths]
    if not paths:
        raise CollectionError("from_files: no files given (or the pattern matched none)")
    if isinstance(datetime, (list, tuple)):
        if len(datetime) != len(paths):
            raise ValueError(f"from_files: datetime has {len(datetime)} values for "
                             f"{len(paths)} paths")
        when = dict(zip(paths, datetime, strict=True)).__getitem__
    elif isinstance(datetime, str):
        rx = re.compile(datetime)

        def when(p):
            m = rx.search(Path(p).name)
            if not m:
                raise ValueError(f"from_files: datetime pattern {datetime!r} does not match "
                                 f"{Path(p).name!r}")
            return m.group(1)
    elif callable(datetime):
        when = datetime
    else:
        raise TypeError("from_files: datetime must be a callable, a regex or a list")
    band_of = band if callable(band) else (lambda p: band)
    id_of = item_id or (lambda p: Path(p).stem)
    groups: dict = {}
    for p in paths:
        key = (str(id_of(p)), when(p))
        g = groups.setdefault(key, {"assets": {}, "path": p})
        b = str(band_of(p))
        if b in g["assets"]:
            raise CollectionError(f"from_files: item {key[0]!r} has two files for band {b!r}: "
                                  f"{g['assets'][b]!r} and {p!r}")
        g["assets"][b] = p
    out = []
    for (iid, t), g in groups.items():
        props = dict(properties(g["path"]) if properties else {})
        out.append(Item(iid, _raster_footprint(g["path"]), t, props, g["assets"]))
    return out
