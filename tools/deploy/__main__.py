"""`python -m tools.deploy ...`"""

from tools.deploy.cli import main

if __name__ == "__main__":
    main()
