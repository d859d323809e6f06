"""Compiler flags for rpci's own code (generated code is built without -Werror)."""

RPCI_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
]
