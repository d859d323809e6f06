"""count_tests.py against test.xml files shaped like gtest's and Bazel's."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import count_tests  # noqa: E402

PASS = '<testcase name="%s" status="run" result="completed" classname="S"/>'
FAIL = '<testcase name="%s" status="run" result="completed" classname="S"><failure message="x"/></testcase>'
# gtest 1.12's shape for GTEST_SKIP().
SKIP = ('<testcase name="%s" status="run" result="skipped" classname="S">'
        '<skipped message="network namespaces unavailable: not root"/></testcase>')


def suite(*cases, failures=0):
    return ('<?xml version="1.0"?><testsuites failures="%d" errors="0"><testsuite name="S">%s</testsuite>'
            '</testsuites>' % (failures, "".join(cases)))


class CountTestsTest(unittest.TestCase):
    def setUp(self):
        self.logs = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

    def write(self, target, xml):
        d = os.path.join(self.logs, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "test.xml"), "w") as f:
            f.write(xml)
        pkg, name = target.rsplit("/", 1)
        return "//%s:%s" % (pkg, name)

    # As //:required_suites lists them.
    REQUIRED = ("//tests/e2e:e2e_test", "//tests/session:netns_session_test", "//tests/harness:netns_test")

    def run_count(self, targets, bazel_rc=0, allow=False):
        return count_tests.summarize(*count_tests.count(self.logs, targets, self.REQUIRED), bazel_rc, allow)

    def test_skipped_cases_are_counted_in_the_closing_line(self):
        t = [self.write("a/x_test", suite(PASS % "one", SKIP % "two", SKIP % "three"))]
        lines, status = self.run_count(t)
        self.assertEqual(lines[-1], "tests: 1 passed, 0 failed, 2 skipped")
        self.assertEqual(status, 0)

    def test_failures_are_named_and_fail_the_run(self):
        t = [self.write("a/x_test", suite(PASS % "one", FAIL % "two", failures=1))]
        lines, status = self.run_count(t)
        self.assertIn("FAILED: a/x_test: S.two", lines)
        self.assertEqual(lines[-1], "tests: 1 passed, 1 failed, 0 skipped")
        self.assertEqual(status, 1)

    def test_a_required_suite_that_skipped_everything_fails_the_run_naming_why(self):
        t = [self.write("tests/e2e/e2e_test", suite(SKIP % "one", SKIP % "two")),
             self.write("a/x_test", suite(PASS % "one"))]
        lines, status = self.run_count(t)
        self.assertEqual(status, 1)
        self.assertTrue(any(l.startswith("FAILED: tests/e2e/e2e_test skipped all 2 cases (network namespaces")
                            for l in lines), lines)
        self.assertEqual(lines[-1], "tests: 1 passed, 1 failed, 2 skipped")

    def test_a_required_suite_that_ran_some_cases_passes(self):
        t = [self.write("tests/session/netns_session_test", suite(PASS % "one", SKIP % "two"))]
        lines, status = self.run_count(t)
        self.assertEqual((lines[-1], status), ("tests: 1 passed, 0 failed, 1 skipped", 0))

    def test_an_ordinary_suite_may_skip_everything(self):
        t = [self.write("a/x_test", suite(SKIP % "one"))]
        self.assertEqual(self.run_count(t)[1], 0)

    def test_the_developer_override_turns_the_failure_into_a_warning(self):
        t = [self.write("tests/harness/netns_test", suite(SKIP % "one"))]
        lines, status = self.run_count(t, allow=True)
        self.assertEqual(status, 0)
        self.assertTrue(any(l.startswith("WARNING: tests/harness/netns_test") for l in lines), lines)

    def test_a_target_without_results_and_a_crash_count_as_failures(self):
        crashed = self.write("a/crash_test", suite(failures=1))
        lines, status = self.run_count([crashed, "//a:missing_test"])
        self.assertEqual(status, 1)
        self.assertIn("FAILED: a/missing_test (no test results)", lines)
        self.assertEqual(lines[-1], "tests: 0 passed, 2 failed, 0 skipped")

    def test_a_bazel_error_with_no_failed_case_still_fails(self):
        t = [self.write("a/x_test", suite(PASS % "one"))]
        lines, status = self.run_count(t, bazel_rc=1)
        self.assertEqual((lines[-1], status), ("tests: 1 passed, 1 failed, 0 skipped", 1))


if __name__ == "__main__":
    unittest.main()
