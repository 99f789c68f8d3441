"""DVC stage `package` (see dvc.yaml); the logic is zoo/stages/package.py."""
import sys

from zoo.stages import main

if __name__ == "__main__":
    sys.exit(main("package", sys.argv[1:]))
