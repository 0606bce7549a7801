"""The evaluation stage: mAP as the reference computes it (`metrics`), a network run over a validation list
(`runner`), COCO's metrics (`coco`), the printouts and result files (`report`) and pictures (`plots`)."""
