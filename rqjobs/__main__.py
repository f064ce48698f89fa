"""``python -m rqjobs`` runs the command line."""

from rqjobs.cli import main

if __name__ == "__main__":
    main()
