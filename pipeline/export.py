"""DVC stage `export` (see dvc.yaml); the logic is zoo/stages/export.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("export", sys.argv[1:]))
