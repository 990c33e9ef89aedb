import sys

from daftseg.recipe.cli import main

sys.exit(main(sys.argv[1:]))
