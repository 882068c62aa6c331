"""Vector storage: catalog (sqlite), exact fp16 vectors, the derived FAISS index.

Idle OpenMP threads (FAISS's, via the libgomp it bundles) sleep instead of spinning unless the
environment says otherwise. Set here, before `faiss` is first imported, because libgomp reads
it once when it is loaded. Spinning team threads took the cores from the threads doing work on
a busy 2-core machine: IVF-PQ training (20k x 512) took 24-29 s with 2 spinning threads and
6-9 s with PASSIVE; single-query searches showed 15-28 ms tails. Idle waits cost nothing here
because every parallel region of ours is milliseconds long.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
