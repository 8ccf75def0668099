"""Images: headers, decoding and preprocessing (pure OpenCV and numpy), tiling, overlays."""
