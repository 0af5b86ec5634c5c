"""sparsernn.policies."""
