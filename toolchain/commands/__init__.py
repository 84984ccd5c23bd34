"""One module per ``shufflenet`` subcommand; each is a thin layer over a Python API."""
