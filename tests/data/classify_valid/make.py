"""Writes this folder's inputs for the `classifier valid` check (see README.md): run from the repository root,
`python tests/data/classify_valid/make.py SET`, where SET is a classification set of scripts/make_shapes_dataset.py
and SET/backup/shapes-classifier_final.weights what `darkcfg train` saved for it."""
import shutil
import sys
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
IMAGES = 29
WRONG = "circle_00056"  # the one valid image of the 200 that these weights classify wrong: put fifth


def main(src: Path) -> None:
    shutil.copy(src / "shapes-classifier.cfg", HERE / "shapes-classifier.cfg")
    shutil.copy(src / "backup" / "shapes-classifier_final.weights", HERE / "shapes-classifier.weights")
    shutil.copy(src / "shapes.names", HERE / "shapes.names")
    (HERE / "shapes.data").write_text("classes=3\nvalid=valid.txt\nlabels=shapes.names\nnames=shapes.names\ntop=2\n")
    names = []
    listed = (src / "valid.txt").read_text().split()
    chosen = [p for p in listed[:IMAGES] if WRONG not in p]
    chosen.insert(4, next(p for p in listed if WRONG in p))
    for path in chosen:  # PNG: both decoders read the same pixels
        name = Path(path).with_suffix(".png").name
        cv2.imwrite(str(HERE / name), cv2.imread(path), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        names.append(name)
    (HERE / "valid.txt").write_text("".join(n + "\n" for n in names))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
