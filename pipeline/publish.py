"""DVC stage `publish` (see dvc.yaml); the logic is zoo/stages/publish.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("publish", sys.argv[1:]))
