"""Deploy the firmware to a board over USB with mpremote: `python -m tools.deploy --help`."""
