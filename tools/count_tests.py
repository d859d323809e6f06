"""Counts test cases in bazel-testlogs and prints the closing line of tools/test.sh.

A test target whose XML is missing or shows no test cases but that Bazel
reports failed counts as one failed test, so a crash is never hidden.
"""
import os
import sys
import xml.etree.ElementTree as ET


def count(testlogs):
    passed, failed, failed_names = 0, 0, []
    for root, _dirs, files in os.walk(testlogs, followlinks=True):
        if "test.xml" not in files:
            continue
        target = os.path.relpath(root, testlogs)
        try:
            tree = ET.parse(os.path.join(root, "test.xml"))
        except ET.ParseError:
            failed += 1
            failed_names.append(target + " (unreadable test.xml)")
            continue
        cases = tree.getroot().iter("testcase")
        n_cases = 0
        target_failed = False
        for case in cases:
            n_cases += 1
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                failed_names.append(target + ": " + case.get("classname", "") + "." + case.get("name", ""))
                target_failed = True
            elif case.get("status") == "notrun" or case.find("skipped") is not None:
                continue
            else:
                passed += 1
        suite = tree.getroot()
        suite_failures = int(suite.get("failures", "0") or 0) + int(suite.get("errors", "0") or 0)
        if n_cases == 0 or (suite_failures and not target_failed):
            # Bazel's own XML for a crashed or timed-out test has one testcase with
            # an error, or none; count the target once.
            if suite_failures or n_cases == 0:
                failed += 1
                failed_names.append(target)
    return passed, failed, failed_names


def main():
    testlogs, bazel_rc = sys.argv[1], int(sys.argv[2])
    passed, failed, names = count(testlogs) if os.path.isdir(testlogs) else (0, 0, [])
    for n in names:
        print("FAILED: " + n)
    if bazel_rc != 0 and failed == 0:
        # Build failure or a target that produced no XML.
        failed = 1
        print("FAILED: bazel exited with %d (build error or missing test results)" % bazel_rc)
    print("tests: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
