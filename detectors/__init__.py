"""sparsernn.detectors."""
