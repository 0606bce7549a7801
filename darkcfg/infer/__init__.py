"""The inference stage: images and videos in (`sources`, `preprocess`), the network run (`fast`, `memory`),
heads decoded (`decode`) and suppressed (`nms`, `boxes`) into detections (`detections`), the whole of
`darknet detector test` (`pipeline`), and what it prints and writes (`formats`, `draw`, `outputs`)."""
