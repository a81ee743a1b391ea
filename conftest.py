"""Root pytest configuration: run GPU kernels in numba's CUDA simulator when no GPU is here.

This must happen before numba is imported anywhere, hence the root conftest.
"""

import os
import shutil

if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
