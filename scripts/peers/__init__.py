"""scripts/bench-peers: gradcodec against its torch-op peers (issue #14).

The peers (``peers.compressors``) are the compressors GRACE (Xu et al., ICDCS
2021; github.com/sands-lab/grace, grace_dl/torch) and torch's DDP communication
hooks write: plain torch tensor ops, one tensor at a time. The driver
(``python -m peers``) times them on one thread on the same tiled real gradient
as ``gradcodec perf --tile``, alternating with gradcodec's pipelines, and prints
the side-by-side and end-to-end tables.
"""

import os

# One thread, set before torch is first imported (torch.set_num_threads(1)
# follows in the driver).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
