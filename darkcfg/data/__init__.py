"""The data stage: Darknet's dataset files (`dataset`: .data files, lists, label paths and files) and image
files (`images`), read as the reference reads them; shared by detection, evaluation and training."""
