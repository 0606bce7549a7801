"""Writes this folder's inputs for the word-tree classifier check (see README.md): run from the repository root,
`python tests/data/classify_tree/make.py`; the C outputs (predict.txt, valid.txt) come from the reference binary."""
from pathlib import Path

import cv2
import numpy as np
import torch

from darkcfg.model.network import Darknet
from darkcfg.model.weights import save_weights

HERE = Path(__file__).resolve().parent
# name parent: two roots, groups of 2, 3, 2, 2 nodes; parents before children
TREE = ["animal -1", "plant -1", "dog 0", "cat 0", "rose 1", "oak 1", "fern 1", "puppy 2", "hound 2", "kitten 3",
        "tabby 3"]
CFG = """[net]
width=2
height=2
channels=3

[convolutional]
filters=3
size=1
stride=1
pad=0
activation=linear

[connected]
output=11
activation=linear

[softmax]
tree=tree.tree
"""
IMAGES = ["puppy_0", "oak_1", "kitten_2", "rose_3", "animal_4", "hound_5"]


def main() -> None:
    (HERE / "tree.tree").write_text("".join(t + "\n" for t in TREE))
    (HERE / "tree.names").write_text("".join(t.split()[0] + "\n" for t in TREE))
    (HERE / "tree.cfg").write_text(CFG)
    (HERE / "tree.data").write_text("classes=11\nnames=tree.names\nlabels=tree.names\nvalid=valid.txt\ntop=4\n")
    (HERE / "valid.txt").write_text("".join(f"{n}.png\n" for n in IMAGES))
    rng = np.random.default_rng(31)
    for n in IMAGES:  # small odd sizes: resize_min and the centre crop both act
        h, w = int(rng.integers(9, 20)), int(rng.integers(9, 20))
        cv2.imwrite(str(HERE / f"{n}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    model = Darknet.from_file(HERE / "tree.cfg")
    conv, fc = model.layers[0], model.layers[1]  # (the reference divides by its count of convolutions: one)
    with torch.no_grad():  # the identity, then output j reads one input times a power of two: exact in any order
        conv.conv.weight.copy_(torch.eye(3)[:, :, None, None])
        conv.conv.bias.zero_()
        fc.weight.zero_()
        for j in range(11):
            fc.weight[j, (5 * j) % 12] = float(2 ** (j % 4)) * (1 if j % 3 else -1)
        fc.bias.copy_(torch.tensor([0.5, -1.0, 0, 1, 0.125, -1, 0, 0.5, -0.5, 0.25, 0]))
    save_weights(model, HERE / "tree.weights")


if __name__ == "__main__":
    main()
