"""Counts test cases and prints the closing line of tools/test.sh:
    count_tests.py <bazel exit status> <bazel command, e.g. bazel --output_base=X>

Only the workspace's current test targets count (bazel query), read from
bazel-testlogs, which may also hold results of removed targets or of earlier
--runs_per_test runs.

A test target whose XML is missing or shows no test cases but that Bazel
reports failed counts as one failed test, so a crash is never hidden.
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET


def result_dirs(testlogs, targets):
    """The result directory of each target label ("//pkg:name" -> pkg/name)."""
    for label in targets:
        pkg, name = label.lstrip("/").split(":", 1)
        yield os.path.join(testlogs, pkg, name)


def count(testlogs, targets):
    passed, failed, failed_names = 0, 0, []
    for root in result_dirs(testlogs, targets):
        target = os.path.relpath(root, testlogs)
        if not os.path.isfile(os.path.join(root, "test.xml")):
            failed += 1
            failed_names.append(target + " (no test results)")
            continue
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
    bazel_rc, bazel = int(sys.argv[1]), sys.argv[2:]
    testlogs = subprocess.run(bazel + ["info", "bazel-testlogs"], capture_output=True, text=True).stdout.strip()
    query = subprocess.run(bazel + ["query", "tests(//...) except attr(tags, manual, //...)"],
                           capture_output=True, text=True).stdout
    targets = [line.strip() for line in query.splitlines() if line.strip().startswith("//")]
    passed, failed, names = count(testlogs, targets) if os.path.isdir(testlogs) else (0, 0, [])
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
