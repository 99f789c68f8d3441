"""DVC stage `evaluate` (see dvc.yaml); the logic is zoo/stages/evaluate.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("evaluate", sys.argv[1:]))
