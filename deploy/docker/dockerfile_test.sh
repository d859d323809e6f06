#!/bin/sh
# Runs dockerfile_test.py (Python 3 stdlib unittest).
exec python3 "$TEST_SRCDIR/$TEST_WORKSPACE/deploy/docker/dockerfile_test.py" -v
