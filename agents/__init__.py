"""sparsernn.agents."""
