"""Example grid files shipped with kdbench (``kdbench run --grid NAME``)."""
