"""Local-time binning and inverse-distance weighting on HTM cells (the HTM-ST paper's maps).

The paper maps particle flux by local solar time: records are binned into 8 local-time
bins of 3 h (local time = UTC + lon/15 h), averaged per HTM cell at a chosen level, and
empty cells are filled by inverse-distance weighting from non-empty cells (power 3,
great-circle distance between cell centres, 500 km radius).

Results are cell cubes (``cells`` dim with a ``cell_ids`` coordinate, attrs
``grid_name="htm"`` and ``level``; see :mod:`stengine.cube.cells`) over all
``8 * 4**level`` cells of the level, NaN where nothing was observed or within reach.
Aggregation is a dask tree reduction of per-partition partial sums; the IDW fill runs as
one dask task per block of target cells, each finding its neighbours through an HTM cap
cover of its coarse parent trixel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import xarray as xr

from ..errors import DimensionError, IndexRangeError
from ..index import htm, ranges
from ..index._regions import EARTH_RADIUS_KM, Cap

__all__ = ["local_solar_time", "local_time_bin", "cell_means", "idw_fill", "local_time_map"]

_DAY_NS = 86_400 * 10 ** 9


def _ns(time) -> np.ndarray:
    from ..index.timecode import to_ns

    return to_ns(time, where="local_solar_time")


def local_solar_time(lon, time) -> np.ndarray:
    """Local (mean) solar time in hours, ``(UTC hour + lon / 15) mod 24``, in [0, 24).

    >>> import numpy as np
    >>> local_solar_time([0.0, 90.0, -45.0], np.array(["2013-01-01T06:00"] * 3, "datetime64[ns]"))
    array([ 6., 12.,  3.])
    """
    ns = _ns(time)
    utc_h = np.mod(ns, _DAY_NS) / 3.6e12
    return np.mod(utc_h + np.asarray(lon, dtype=np.float64) / 15.0, 24.0)


def local_time_bin(lon, time, *, nbins: int = 8) -> np.ndarray:
    """Local-time bin of each record: ``floor(local_time / (24 / nbins))``, 0..nbins-1.

    Bin 0 of 8 is 00-03 h local time.
    """
    if not (isinstance(nbins, int | np.integer) and 1 <= nbins <= 24 * 60):
        raise ValueError(f"local_time_bin: nbins must be an int in 1..1440; got {nbins!r}")
    b = np.floor(local_solar_time(lon, time) * (nbins / 24.0)).astype(np.int64)
    return np.minimum(b, nbins - 1)


def _partial(df, variable, level, lt_bin, nbins):
    """(2, n_cells) float64: per-cell sum and count of ``variable`` in one partition."""
    n = 8 * 4 ** level
    out = np.zeros((2, n))
    if len(df) == 0:
        return out
    lon = df["lon"].to_numpy(np.float64)
    lat = df["lat"].to_numpy(np.float64)
    v = df[variable].to_numpy(np.float64)
    keep = np.isfinite(v)
    if lt_bin is not None:
        keep &= local_time_bin(lon, df["time"].to_numpy(), nbins=nbins) == lt_bin
    idx = (htm.lonlat_to_id(lon[keep], lat[keep], level) - np.uint64(8 << (2 * level))).astype(
        np.int64)
    out[0] = np.bincount(idx, weights=v[keep], minlength=n)
    out[1] = np.bincount(idx, minlength=n)
    return out


def _cell_cube(values, level, name, attrs, count=None):
    from ..cube.cells import make_cell_cube

    ids = np.arange(8 << (2 * level), 16 << (2 * level), dtype=np.uint64)
    cube = make_cell_cube(values, ids, grid="htm", level=level, name=name, attrs=attrs)
    if count is not None:
        cube = cube.assign_coords(count=("cells", count))
    return cube


def cell_means(records, variable: str, *, level: int, lt_bin: int | None = None,
               nbins: int = 8) -> xr.DataArray:
    """Mean of ``variable`` per HTM cell at ``level``, optionally for one local-time bin.

    Parameters
    ----------
    records : pandas.DataFrame | dask.dataframe.DataFrame
        Columns ``lon``, ``lat`` (degrees), ``time`` (UTC) and ``variable``.
    variable : str
        Column to average (NaNs are skipped).
    level : int
        HTM level of the cells (0..12: the result holds all ``8 * 4**level`` cells).
    lt_bin : int, optional
        Keep only records in this local-time bin (see :func:`local_time_bin`).
    nbins : int
        Number of local-time bins (8: 3-hour bins).

    Returns
    -------
    xarray.DataArray
        Cell cube of the means (NaN where empty), with a ``count`` coordinate; lazy
        (a dask tree reduction over partitions) for dask input.
    """
    level = htm.check_level(level, where="cell_means")
    if level > 12:
        raise IndexRangeError(f"cell_means: level must be <= 12 (the result holds every cell "
                              f"of the level: {8 * 4 ** level:,} at level {level})")
    cols = getattr(records, "columns", [])
    missing = [c for c in ("lon", "lat", "time", variable) if c not in cols]
    if missing:
        raise DimensionError(f"cell_means: records need columns lon, lat, time and {variable!r}; "
                             f"missing {missing}")
    for c in ("lon", "lat", variable):
        kind = getattr(records.dtypes[c], "kind", "O") if hasattr(records, "dtypes") else "f"
        if kind not in "biuf":
            raise TypeError(f"cell_means: records column {c!r} must be numeric (bool, int or "
                            f"float); got {records.dtypes[c]}. Convert it first, e.g. "
                            f"records[{c!r}].astype(float).")
    n = 8 * 4 ** level
    attrs = {"variable": variable, "lt_bin": -1 if lt_bin is None else int(lt_bin),
             "nbins": int(nbins)}
    if hasattr(records, "dask"):
        import dask
        import dask.array as dsa

        parts = [dsa.from_delayed(dask.delayed(_partial)(p, variable, level, lt_bin, nbins),
                                  shape=(2, n), dtype=np.float64)
                 for p in records.to_delayed()]
        tot = dsa.stack(parts).sum(axis=0, split_every=8)
    else:
        tot = _partial(records, variable, level, lt_bin, nbins)
    s, c = tot[0], tot[1]
    mean = np.where(c > 0, s / np.where(c > 0, c, 1.0), np.nan)
    return _cell_cube(mean, level, variable, attrs, count=c)


# --------------------------------------------------------------------------- IDW
@numba.njit(nogil=True, cache=True)
def _idw_kernel(txyz, starts, stops, offs, sxyz, sval, chord2_max, power, radius_earth, out):
    """IDW at targets ``txyz`` from sources ``sxyz[starts[j]:stops[j]]`` for the candidate
    ranges ``j in offs[g]..offs[g+1]`` of each target ``g``."""
    for g in range(txyz.shape[0]):
        num = 0.0
        den = 0.0
        exact = np.nan
        for j in range(offs[g], offs[g + 1]):
            for s in range(starts[j], stops[j]):
                dx = txyz[g, 0] - sxyz[s, 0]
                dy = txyz[g, 1] - sxyz[s, 1]
                dz = txyz[g, 2] - sxyz[s, 2]
                c2 = dx * dx + dy * dy + dz * dz
                if c2 > chord2_max:
                    continue
                d = 2.0 * radius_earth * math.asin(min(1.0, 0.5 * math.sqrt(c2)))
                if d < 1e-9:
                    exact = sval[s]
                    continue
                w = d ** (-power)
                num += w * sval[s]
                den += w
        out[g] = exact if exact == exact else (num / den if den > 0.0 else np.nan)


def _unit(lon, lat):
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _idw_block(t_ids, level, coarse, src, power, radius_km):
    """IDW values at the target cells ``t_ids`` (sorted, one block); ``src`` holds the sorted
    source ids, their unit vectors and values."""
    src_ids, src_xyz, src_val = src
    tlon, tlat = htm.centre(t_ids)
    txyz = _unit(tlon, tlat)
    shift = np.uint64(2 * (level - coarse))
    parents = t_ids >> shift
    r_deg = math.degrees(radius_km / EARTH_RADIUS_KM)
    starts, stops, offs = [], [], [0]
    cache = {}
    for p in parents.tolist():
        if p not in cache:
            # neighbours of every cell of parent p lie in a cap around p's centre
            v = htm.vertices(np.uint64(p), xyz=True)
            c = v.sum(axis=0)
            c /= np.linalg.norm(c)
            rho = math.degrees(math.acos(min(1.0, float((v @ c).min()))))
            clon, clat = math.degrees(math.atan2(c[1], c[0])), math.degrees(math.asin(c[2]))
            cov = htm.cover(Cap(clon, clat, min(180.0, rho + r_deg)), coarse)
            fine = ranges.refine(cov, int(shift))
            a = np.searchsorted(src_ids, fine[:, 0])
            b = np.searchsorted(src_ids, fine[:, 1])
            keep = b > a
            cache[p] = (a[keep], b[keep])
        a, b = cache[p]
        starts.append(a)
        stops.append(b)
        offs.append(offs[-1] + a.size)
    out = np.empty(t_ids.size)
    chord = 2.0 * math.sin(min(math.pi, radius_km / EARTH_RADIUS_KM) / 2.0)
    _idw_kernel(txyz, np.concatenate(starts).astype(np.int64) if starts else np.empty(0, np.int64),
                np.concatenate(stops).astype(np.int64) if stops else np.empty(0, np.int64),
                np.asarray(offs, np.int64), src_xyz, src_val, chord * chord * (1 + 1e-12),
                float(power), EARTH_RADIUS_KM, out)
    return out


def idw_fill(cells: xr.DataArray, *, power: float = 3.0, radius_km: float = 500.0,
             block: int = 4096) -> xr.DataArray:
    """Fill the empty (NaN) cells of a 1-D HTM cell cube by inverse-distance weighting.

    Each empty cell gets ``sum(w_i v_i) / sum(w_i)`` over the non-empty cells ``i``
    whose centres lie within ``radius_km`` (great-circle, mean Earth radius
    6371.0088 km) of its centre, with ``w_i = d_i**-power``; cells with no such
    neighbour stay NaN. Non-empty cells keep their values.

    Parameters
    ----------
    cells : xarray.DataArray
        A cell cube with only the ``cells`` dim and ``grid_name="htm"`` (e.g. from
        :func:`cell_means`); computed first if lazy (it is small).
    power : float
        IDW exponent (the paper: 3).
    radius_km : float
        Search radius (the paper: 500 km).
    block : int
        Target cells per dask task.

    Returns
    -------
    xarray.DataArray
        Same cells, lazy (one dask task per block of empty cells), attrs ``idw_power``
        and ``idw_radius_km`` added and a ``filled`` coordinate (True where interpolated).
    """
    from ..cube.cells import check_cell_cube

    grid, level = check_cell_cube(cells, op="idw_fill", name="cells")
    if grid != "htm" or cells.dims != ("cells",):
        raise DimensionError(f"idw_fill: needs a 1-D HTM cell cube (dims ('cells',), grid 'htm'); "
                             f"got dims {cells.dims}, grid {grid!r}")
    if not (radius_km > 0 and power > 0):
        raise ValueError(f"idw_fill: power and radius_km must be positive; got power={power}, "
                         f"radius_km={radius_km}")
    import dask
    import dask.array as dsa

    vals = np.asarray(cells.values, dtype=np.float64)
    ids = cells["cell_ids"].values.astype(np.uint64)
    have = np.isfinite(vals)
    src_ids = ids[have]
    slon, slat = htm.centre(src_ids)
    src_xyz = np.ascontiguousarray(_unit(slon, slat))
    src_val = vals[have]
    targets = ids[~have]
    # coarse level: parent trixels about as wide as the search radius (~90/2**k degrees)
    r_deg = math.degrees(radius_km / EARTH_RADIUS_KM)
    coarse = int(min(level, max(0, math.floor(math.log2(90.0 / max(r_deg, 1e-9))))))
    src = dask.delayed((src_ids, src_xyz, src_val), pure=True)  # shipped once
    parts = []
    for i in range(0, targets.size, block):
        t = targets[i:i + block]
        task = dask.delayed(_idw_block, pure=True)(t, level, coarse, src, power, radius_km)
        parts.append(dsa.from_delayed(task, shape=(t.size,), dtype=np.float64))
    filled = dsa.concatenate(parts) if parts else dsa.zeros(0)
    # scatter: observed values where present, interpolated ones at the targets
    order = np.argsort(np.concatenate([np.flatnonzero(have), np.flatnonzero(~have)]))
    data = dsa.concatenate([dsa.from_array(src_val), filled])[order]
    out = cells.copy(data=data)
    out.attrs.update(idw_power=float(power), idw_radius_km=float(radius_km))
    return out.assign_coords(filled=("cells", ~have))


def local_time_map(records, variable: str, *, level: int = 6, lt_bin: int = 0, nbins: int = 8,
                   power: float = 3.0, radius_km: float = 500.0) -> xr.DataArray:
    """The paper's map: mean ``variable`` per HTM cell in one local-time bin, gaps filled by IDW.

    ``lt_bin=0`` with ``nbins=8`` is 00-03 h local time. See :func:`cell_means` and
    :func:`idw_fill`; the result is lazy (compute it, or plot its ``values``).
    """
    means = cell_means(records, variable, level=level, lt_bin=lt_bin, nbins=nbins)
    return idw_fill(means.compute(), power=power, radius_km=radius_km)
