"""The inference stage: images and videos in (`sources`, `live`, `preprocess`), the network run (`fast`, `runtime`,
`openvino/`), heads decoded (`decode`) and suppressed (`nms`, `boxes`) into detections (`detections`): the detector
of `darknet detector test` (`detector`) and its run over sources (`run`), what it prints (`printout`), draws
(`draw`) and writes (`outputs`), serves (`ports`, `serve`); class names (`names`) and classifiers (`classify`)."""
