"""The pure policy engine: parsing, checking, compiling and evaluating policy sets.

Nothing in this package performs I/O beyond reading policy files, and nothing imports a
network, database or web library; an import-linter contract enforces it.
"""
