"""stengine's side-by-side benchmarks: stengine and its peers, same data, same run.

Run ``python -m benchmarks --help`` (or ``python3 tasks.py bench``). Each family module
(local, focal, zonal, index, cells) registers cases with :func:`benchmarks._runner.benchmark`.
"""
