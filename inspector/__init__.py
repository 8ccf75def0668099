"""Industrial defect detection: a CNN classifier plus a binary segmentation mask."""
