"""The training stage: the heads' losses (`losses/`, with `iou_grad`), batches (`batches`, `augment`), the
update (`optim`, `schedule`), the loop (`trainer`) and its chart (`chart`), and k-means anchors (`anchors`)."""
