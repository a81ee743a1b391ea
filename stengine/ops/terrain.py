"""Terrain from a DEM: slope, aspect and hillshade with Horn's 3×3 method, in degrees.

Conventions (same on every backend):

* **gradient** (Horn 1981, as ``gdaldem``): with the 3×3 neighbourhood ``a b c / d e f /
  g h i`` (row ``a b c`` north), ``dz/dx = ((c + 2f + i) − (a + 2d + g)) / (8·dx)``
  (towards east) and ``dz/dy = ((a + 2b + c) − (g + 2h + i)) / (8·dy)`` (towards north),
  elevations times ``z_factor``. Rasters whose rows run south to north (or columns
  west) are handled from the transform's signs.
* **cell sizes in metres**: projected CRS: the pixel size converted from the CRS's
  linear unit (feet too). Geographic (lon/lat) CRS: per row, from the latitude of the
  row's centre on the CRS's ellipsoid (WGS84 for EPSG:4326): ``dx = N(φ)·cos φ·Δλ``,
  ``dy = M(φ)·Δφ`` (prime-vertical and meridional radii of curvature); degrees are
  never mixed with metres. No CRS: pass ``cell_size=``. Elevations are taken to be in
  metres; for feet pass ``z_factor=0.3048``.
* **slope**: degrees from horizontal (0–90), or percent rise (``units="percent"``).
* **aspect**: the downslope direction in degrees clockwise from north (0 = north,
  90 = east; 0 ≤ aspect < 360); flat cells (zero gradient) get ``flat`` (default −1).
  ``gdaldem aspect`` gives the same angles; it writes −9999 for flat cells (0 with
  ``-zero_for_flat``).
* **hillshade**: the cosine of the angle between the surface normal and the sun
  (``azimuth`` clockwise from north, ``altitude`` above the horizon, degrees), clipped
  at 0: a float in [0, 1]. ``gdaldem hillshade``'s byte is ``1 + 254 × this`` (rounded;
  1 in full shade).
* **edges and missing cells**: a cell is NaN when it or any neighbour is missing (NaN,
  ``attrs["nodata"]``), and at the raster edge under ``boundary="nan"`` (the default,
  like ``gdaldem`` without ``-compute_edges``); ``"nearest"``, ``"reflect"`` and
  ``"wrap"`` (global grids across the antimeridian) fill the edge instead.
* output dtype: float32 for float32 and ≤ 16-bit integer DEMs, float64 otherwise.
* zero-size DEMs give the empty result; one-pixel DEMs are NaN under ``"nan"`` and flat
  (slope 0) under the other rules, like any raster whose windows reach beyond its edge.
"""

from __future__ import annotations

import math

import numpy as np

from ..cube import check_dtype, check_raster
from ..cube.validate import raster_grid
from ._kernel import Kernel
from ._lift import lift_focal
from ._numba import terrain as _cpu
from .focal import float_dtype, kernel_dtype, nodata_of
from .window import Window

__all__ = ["slope", "aspect", "hillshade"]

_GPU = "stengine.ops._cuda.terrain:horn"
_K = {name: Kernel(name, cpu=_cpu.horn, gpu=_GPU) for name in ("slope", "aspect", "hillshade")}
_WINDOW = Window.rectangle(3)


def _cell_sizes(da, dims, cell_size, op):
    """``(block_kwargs, xsign, ysign)``: per-block ``dx``/``dy`` (metres) of output rows."""
    grid = raster_grid(da, dims=dims)
    t = grid.transform
    if t.b != 0 or t.d != 0:
        raise ValueError(f"{op}: the raster's grid is rotated ({tuple(t)[:6]}); terrain needs "
                         "north-up or south-up rows. Reproject it first.")
    xsign = 1.0 if t.a > 0 else -1.0
    ysign = 1.0 if t.e < 0 else -1.0  # rows running south: row 0 is north
    ny = da.sizes[dims[0]]
    if cell_size is not None:
        dx, dy = (cell_size, cell_size) if np.isscalar(cell_size) else cell_size
        if not (float(dx) > 0 and float(dy) > 0):
            raise ValueError(f"{op}: cell_size must be positive (dx, dy) in metres; got "
                             f"{cell_size!r}")
        dx_all, dy_all = np.full(ny, float(dx)), np.full(ny, float(dy))
    elif grid.crs is None:
        raise ValueError(
            f"{op}: the raster has no CRS, so its cell size in metres is unknown. Set a CRS "
            "(stengine.cube.set_grid) or pass cell_size=(dx, dy) in the elevations' units.")
    elif grid.crs.is_geographic:
        dx_all, dy_all = geographic_spacing(grid)
    else:
        axes = grid.crs.axis_info
        factor = axes[0].unit_conversion_factor if axes else 1.0
        if axes and axes[0].unit_name and "metre" not in axes[0].unit_name and \
                "meter" not in axes[0].unit_name and "foot" not in axes[0].unit_name \
                and "feet" not in axes[0].unit_name:
            raise ValueError(f"{op}: the CRS's linear unit is {axes[0].unit_name!r}; pass "
                             "cell_size=(dx, dy) in metres")
        dx_all = np.full(ny, grid.res[0] * factor)
        dy_all = np.full(ny, grid.res[1] * factor)

    def block_kwargs(ranges):
        r0, r1 = ranges[dims[0]]
        return {"dx": dx_all[r0:r1], "dy": dy_all[r0:r1]}

    return block_kwargs, xsign, ysign


def geographic_spacing(grid) -> tuple[np.ndarray, np.ndarray]:
    """East-west and north-south cell sizes in metres of each row of a lon/lat grid.

    On the CRS's ellipsoid, at each row's centre latitude φ: ``dx = N(φ)·cos φ·Δλ`` and
    ``dy = M(φ)·Δφ`` with ``N = a / sqrt(1 − e²sin²φ)`` and
    ``M = a(1 − e²) / (1 − e²sin²φ)^1.5``.

    Examples
    --------
    >>> from stengine.grid import Grid
    >>> dx, dy = geographic_spacing(Grid.from_bbox((0, -1, 1, 61), 1, crs=4326))
    >>> [round(float(v)) for v in dx[[-2, 0]]], round(float(dy[-2]))   # at 0.5° N, 60.5° N
    ([111315, 54956], 110574)
    """
    ell = grid.crs.ellipsoid
    a = ell.semi_major_metre if ell is not None else 6378137.0
    inv_f = ell.inverse_flattening if ell is not None else 298.257223563
    f = 1.0 / inv_f if inv_f else 0.0
    e2 = f * (2 - f)
    axes = grid.crs.axis_info
    to_rad = axes[0].unit_conversion_factor if axes else math.pi / 180
    phi = grid.ys() * to_rad
    s2 = np.sin(phi) ** 2
    n = a / np.sqrt(1 - e2 * s2)
    m = a * (1 - e2) / (1 - e2 * s2) ** 1.5
    return n * np.cos(phi) * grid.res[0] * to_rad, m * grid.res[1] * to_rad


def _terrain(op, what, da, params, *, z_factor, boundary, dims, cell_size):
    dims = check_raster(da, dims, op=op)
    check_dtype(da, "iuf", op=op, what="numeric (elevation)")
    if not (isinstance(z_factor, int | float | np.number) and math.isfinite(z_factor)
            and z_factor != 0):
        raise ValueError(f"{op}: z_factor must be a finite non-zero number; got {z_factor!r}")
    block_kwargs, xsign, ysign = _cell_sizes(da, dims, cell_size, op)
    da = kernel_dtype(da)
    nd, has_nd = nodata_of(da, op)
    out_dtype = float_dtype(da.dtype)
    kw = dict(what=what, z=float(z_factor), xsign=xsign, ysign=ysign,
              params=tuple(float(p) for p in params), nodata=nd, has_nodata=has_nd,
              out_dtype=out_dtype)
    attrs = {k: v for k, v in da.attrs.items() if k not in ("nodata", "units", "long_name")}
    return lift_focal(_K[op], da, _WINDOW, dims=dims, boundary=boundary, op=op,
                      dtype=out_dtype, kwargs=kw, block_kwargs=block_kwargs, attrs=attrs)


def slope(da, *, units="degrees", z_factor=1.0, boundary="nan", dims=None, cell_size=None):
    """Slope of a DEM by Horn's method: degrees from horizontal, or percent rise.

    Parameters
    ----------
    da : xarray.DataArray
        Elevations (metres; see ``z_factor``) with spatial dims ``dims``, any leading
        dims (``time``, ``band``); numpy, dask, CuPy or dask+CuPy.
    units : {"degrees", "percent"}
        Degrees (0–90) or 100 × rise / run.
    z_factor : float
        Multiplies elevations (e.g. 0.3048 for feet on a metre grid).
    boundary : str | dict, default "nan"
        Beyond the raster edge: ``"nan"`` (edge cells NaN, like gdaldem), ``"nearest"``,
        ``"reflect"``, ``"wrap"`` or ``{dim: rule}``.
    dims : (str, str), optional
        Spatial dims ``(y, x)``.
    cell_size : float | (float, float), optional
        Cell size ``(dx, dy)`` in metres, overriding the CRS (required without one).

    Returns
    -------
    xarray.DataArray
        Float slope, same dims, coords and chunks as ``da``; ``attrs["units"]`` is
        ``"degrees"`` or ``"percent"``.

    Raises
    ------
    ValueError
        No CRS and no ``cell_size``; a rotated grid; a CRS unit that is not metres/feet.

    See Also
    --------
    aspect, hillshade

    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.ops.terrain import slope
    >>> z = np.tile(np.arange(5, dtype="f4") * 10, (5, 1))   # rises 10 m per 10 m cell east
    >>> g = stengine.Grid.from_bbox((0, 0, 50, 50), 10, crs="EPSG:32633")
    >>> slope(stengine.cube.make_raster(z, g)).values.round(1)   # = da.st.slope()
    array([[nan, nan, nan, nan, nan],
           [nan, 45., 45., 45., nan],
           [nan, 45., 45., 45., nan],
           [nan, 45., 45., 45., nan],
           [nan, nan, nan, nan, nan]], dtype=float32)
    """
    if units not in ("degrees", "percent"):
        raise ValueError(f"slope: units must be 'degrees' or 'percent'; got {units!r}")
    out = _terrain("slope", _cpu.SLOPE_DEG if units == "degrees" else _cpu.SLOPE_PCT, da,
                   (0, 0, 0), z_factor=z_factor, boundary=boundary, dims=dims,
                   cell_size=cell_size)
    out.attrs.update(units=units, long_name="slope")
    return out


def aspect(da, *, flat=-1.0, boundary="nan", dims=None, cell_size=None):
    """Aspect of a DEM by Horn's method: downslope direction, degrees clockwise from north.

    Parameters
    ----------
    da : xarray.DataArray
        Elevations with spatial dims ``dims``.
    flat : float, default -1
        Value for flat cells (zero gradient); ``np.nan`` is accepted.
    boundary, dims, cell_size
        As in :func:`slope`. Only the ratio of ``dx`` to ``dy`` matters here.

    Returns
    -------
    xarray.DataArray
        Float aspect in [0, 360) (0 north, 90 east), ``flat`` where flat, NaN at edges
        and next to missing cells.

    See Also
    --------
    slope, hillshade

    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.ops.terrain import aspect
    >>> g = stengine.Grid.from_bbox((0, 0, 5, 5), 1, crs="EPSG:3857")   # row 0 north
    >>> south = np.repeat(np.arange(5.0)[:, None], 5, axis=1)   # rises towards the south
    >>> float(aspect(stengine.cube.make_raster(south, g)).values[2, 2])  # = da.st.aspect()
    0.0
    >>> float(aspect(stengine.cube.make_raster(south.T, g)).values[2, 2])  # rises east
    270.0
    >>> float(aspect(stengine.cube.make_raster(np.zeros((5, 5)), g)).values[2, 2])  # flat
    -1.0
    """
    out = _terrain("aspect", _cpu.ASPECT, da, (flat, 0, 0), z_factor=1.0, boundary=boundary,
                   dims=dims, cell_size=cell_size)
    out.attrs.update(units="degrees", long_name="aspect (downslope, clockwise from north)")
    return out


def hillshade(da, *, azimuth=315.0, altitude=45.0, z_factor=1.0, boundary="nan", dims=None,
              cell_size=None):
    """Shaded relief of a DEM by Horn's method: illumination in [0, 1].

    Parameters
    ----------
    da : xarray.DataArray
        Elevations with spatial dims ``dims``.
    azimuth : float, default 315
        Direction of the light source, degrees clockwise from north (315 = north-west).
    altitude : float, default 45
        Elevation of the light source above the horizon, degrees.
    z_factor, boundary, dims, cell_size
        As in :func:`slope`.

    Returns
    -------
    xarray.DataArray
        Float ``cos(incidence)`` clipped at 0; ``gdaldem hillshade`` writes
        ``1 + 254 × this`` as a byte.

    See Also
    --------
    slope, aspect

    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.ops.terrain import hillshade
    >>> g = stengine.Grid.from_bbox((0, 0, 5, 5), 1, crs="EPSG:3857")
    >>> flat = stengine.cube.make_raster(np.zeros((5, 5)), g)
    >>> bool(hillshade(flat).values[2, 2] == np.sin(np.radians(45)))   # sun at 45°
    True
    >>> ramp = stengine.cube.make_raster(np.tile(np.arange(5.0), (5, 1)), g)  # faces west
    >>> round(float(hillshade(ramp, azimuth=270).values[2, 2]), 4)   # sun in the west: lit
    1.0
    >>> round(float(hillshade(ramp, azimuth=0).values[2, 2]), 4)     # sun in the north
    0.5
    """
    if not -360 <= azimuth <= 360 or not 0 <= altitude <= 90:
        raise ValueError(f"hillshade: azimuth must be in [-360, 360] and altitude in [0, 90] "
                         f"degrees; got azimuth={azimuth!r}, altitude={altitude!r}")
    az, alt = math.radians(azimuth), math.radians(altitude)
    params = (math.sin(alt), math.cos(alt) * math.sin(az), math.cos(alt) * math.cos(az))
    out = _terrain("hillshade", _cpu.HILLSHADE, da, params, z_factor=z_factor,
                   boundary=boundary, dims=dims, cell_size=cell_size)
    out.attrs.update(units="1", long_name="hillshade")
    return out
