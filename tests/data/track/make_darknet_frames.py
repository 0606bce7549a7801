"""Writes tests/data/track/darknet_frames.npz: 20 frames of detections + embeddings for the darknet tracker test."""
from pathlib import Path

import numpy as np

rng = np.random.default_rng(28)
E, C = 16, 3
ident = rng.normal(size=(6, E)).astype(np.float32)
frames = []
# objects: (id, class, start frame, end frame, x0, y0, vx, vy, w, h); object 2 hidden in frames 7..11
objs = [(0, 0, 0, 20, 0.1, 0.3, 0.03, 0.0, 0.1, 0.2), (1, 1, 0, 20, 0.9, 0.35, -0.03, 0.0, 0.1, 0.2),
        (2, 0, 0, 20, 0.5, 0.7, 0.0, -0.01, 0.15, 0.15), (3, 2, 9, 20, 0.2, 0.8, 0.02, -0.01, 0.08, 0.1),
        (4, 0, 3, 6, 0.6, 0.2, 0.0, 0.0, 0.1, 0.1)]
rows = []
for f in range(20):
    for k, c, s, e, x, y, vx, vy, w, h in objs:
        if not s <= f < e or (k == 2 and 7 <= f < 12):
            continue
        t = f - s
        box = [x + vx * t + rng.normal(0, .003), y + vy * t + rng.normal(0, .003), w, h]
        p = np.zeros(C, np.float32)
        p[c] = rng.uniform(0.3, 0.95)
        if rng.random() < 0.2:
            p[(c + 1) % C] = rng.uniform(0.26, 0.29)  # a second class, never the best
        emb = ident[k] + rng.normal(0, 0.35, E)
        if k == 4:
            emb = ident[0] + rng.normal(0, 0.2, E)  # looks like object 0
        rows.append((f, k, *box, *p, *emb))
    # a row with no prob above thresh (suppressed by NMS), every frame
    rows.append((f, -1, 0.5, 0.5, 0.1, 0.1, 0, 0, 0, *rng.normal(size=E)))
a = np.array(rows, np.float32)
np.savez_compressed(Path(__file__).with_name("darknet_frames.npz"), frame=a[:, 0].astype(np.int64),
                    object=a[:, 1].astype(np.int64), boxes=a[:, 2:6], probs=a[:, 6:6 + C], embeddings=a[:, 6 + C:])
print(a.shape)
