"""Rich renderables for the command line, one module per command family: pure functions of
rows that print nothing (the commands print them)."""
