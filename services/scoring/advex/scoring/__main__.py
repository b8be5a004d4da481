"""`python -m advex.scoring` runs the scoring service until SIGTERM."""

from advex.scoring.server import main

if __name__ == "__main__":
    main()
