"""DVC stage `convert` (see dvc.yaml); the logic is zoo/stages/convert.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("convert", sys.argv[1:]))
