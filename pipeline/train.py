"""DVC stage `train` (see dvc.yaml); the logic is zoo/stages/train.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("train", sys.argv[1:]))
