"""The evaluation stage: mAP as the reference computes it (`metrics`), a network run over a validation list
(`runner`), COCO's metrics (`coco`), the printouts and result files (`printout`), pictures (`plots`), the
error-analysis page (`analysis`, `html_report`) and classifier validation (`classifier`)."""
