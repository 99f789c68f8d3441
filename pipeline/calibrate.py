"""DVC stage `calibrate` (see dvc.yaml); the logic is zoo/stages/calibrate.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("calibrate", sys.argv[1:]))
