"""sparsernn.core."""
