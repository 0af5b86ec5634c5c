"""Train or evaluate an agent: the same command line as ``python -m sparsernn.agents``.

    python scripts/train_agent.py train --config agents/configs/cartpole_novel.yaml --density-hh 0.1
"""
import sys

from sparsernn.agents.cli import main

if __name__ == "__main__":
    sys.exit(main())
