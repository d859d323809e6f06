#!/bin/sh
# Runs count_tests_test.py (Python 3 stdlib unittest).
exec python3 "$TEST_SRCDIR/$TEST_WORKSPACE/tools/count_tests_test.py" -v
