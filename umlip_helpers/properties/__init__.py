"""Property workflows: each takes Atoms and a calculator and returns a frozen Result with units in its field names."""
