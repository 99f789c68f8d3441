"""DVC stage `prepare` (see dvc.yaml); the logic is zoo/stages/prepare.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("prepare", sys.argv[1:]))
