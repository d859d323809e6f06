"""Checks deploy/docker/Dockerfile without a Docker engine: its stages and
targets, that it builds and copies exactly the Bazel binaries in binaries.txt,
where it keeps root, and that runtime-packages.sh resolves a real binary's
libraries to Debian packages."""
import os
import re
import subprocess
import tempfile
import unittest

ROOT = os.path.join(os.environ.get("TEST_SRCDIR", "."), os.environ.get("TEST_WORKSPACE", ""))
DOCKER = os.path.join(ROOT, "deploy/docker")
LABEL = re.compile(r"^//([a-z0-9_/]+):([a-z0-9_-]+)$")


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def binaries():
    labels = [l.strip() for l in read("deploy/docker/binaries.txt").splitlines()]
    return [l for l in labels if l and not l.startswith("#")]


def stages():
    """Stage name -> {"from": base, "lines": [instruction lines], "comment": text before FROM}."""
    text = read("deploy/docker/Dockerfile").replace("\\\n", " ")
    out, current, comment = {}, None, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)$", stripped, re.I)
        if m:
            current = {"from": m.group(1), "lines": [], "comment": " ".join(comment)}
            out[m.group(2)] = current
        elif stripped and current is not None:
            current["lines"].append(stripped)
        if stripped:
            comment = []
    return out


def instruction(stage, keyword):
    return [l[len(keyword):].strip() for l in stage["lines"] if l.upper().startswith(keyword + " ")]


class DockerfileTest(unittest.TestCase):
    def test_binaries_file_lists_well_formed_labels(self):
        labels = binaries()
        self.assertEqual(len(labels), len(set(labels)))
        self.assertEqual(sorted(labels), ["//agent:rpci-agent", "//controller:rpci-controller", "//examples:emu_jobs",
                                          "//plugin:rpci-plugin"])
        for label in labels:
            self.assertRegex(label, LABEL)

    def test_has_a_target_per_component_on_debian_12(self):
        s = stages()
        self.assertEqual(s["build"]["from"], "debian:12")
        self.assertEqual(s["runtime"]["from"], "debian:12-slim")
        for label in binaries():
            component = LABEL.match(label).group(1)
            self.assertIn(component, s, "no target for " + label)
            self.assertEqual(s[component]["from"], "runtime", component + " is not on the slim runtime")

    def test_build_stage_installs_what_install_deps_installs(self):
        build = stages()["build"]
        self.assertIn("tools/install_deps.sh /tmp/install_deps.sh", instruction(build, "COPY"))
        self.assertTrue(any(r.startswith("/tmp/install_deps.sh") for r in instruction(build, "RUN")))

    def test_builds_exactly_the_listed_binaries(self):
        runs = " ".join(instruction(stages()["build"], "RUN"))
        m = re.search(r"bazel build (?:-c opt )?((?://\S+\s*)+)", runs)
        self.assertIsNotNone(m, runs)
        self.assertEqual(sorted(m.group(1).split()), sorted(binaries()))
        m = re.search(r"for b in ([^;]+); do", runs)
        self.assertIsNotNone(m, runs)
        paths = ["%s/%s" % LABEL.match(l).groups() for l in binaries()]
        self.assertEqual(sorted(m.group(1).split()), sorted(paths))

    def test_each_target_copies_its_binary_and_runs_it(self):
        s = stages()
        listed = {LABEL.match(l).group(2): LABEL.match(l).group(1) for l in binaries()}
        for name, stage in s.items():
            for copy in instruction(stage, "COPY"):
                m = re.match(r"--from=build /out/(\S+) (\S+)$", copy)
                if not m or m.group(1).endswith(".packages"):
                    continue
                self.assertIn(m.group(1), listed, "%s copies %s, which binaries.txt does not list" % (name, m.group(1)))
                self.assertEqual(listed[m.group(1)], name)
                self.assertEqual(instruction(stage, "ENTRYPOINT"), ['["%s"]' % m.group(2)])
        for binary, component in listed.items():
            copies = [c for c in instruction(s[component], "COPY") if c.startswith("--from=build /out/%s " % binary)]
            self.assertEqual(len(copies), 1, component)

    def test_only_components_that_need_root_keep_it_and_say_why(self):
        s = stages()
        self.assertEqual(instruction(s["controller"], "USER"), ["65532:65532"])
        self.assertEqual(instruction(s["examples"], "USER"), ["65532:65532"])
        for component in ("agent", "plugin"):
            self.assertEqual(instruction(s[component], "USER"), ["0:0"])
            self.assertIn("keeps root", s[component]["comment"])

    def test_example_pod_runs_the_workload_the_examples_image_holds(self):
        examples = stages()["examples"]
        self.assertIn("--from=build /out/emu_jobs /usr/local/bin/emu_jobs", instruction(examples, "COPY"))
        pod = read("deploy/examples/pod-emu.yaml")
        self.assertIn("image: rpci-examples:", pod)
        self.assertIn('command: ["/usr/local/bin/emu_jobs"', pod)
        self.assertRegex(read("deploy/docker/Dockerfile"), r"--target examples +-t rpci-examples")

    def test_each_target_installs_its_binarys_packages_through_install_packages(self):
        s = stages()
        self.assertIn("deploy/docker/install-packages.sh /usr/local/sbin/install-packages",
                      instruction(s["runtime"], "COPY"))
        for label in binaries():
            component, binary = LABEL.match(label).groups()
            lines = s[component]["lines"]
            copy = "COPY --from=build /out/%s.packages /tmp/packages" % binary
            self.assertIn(copy, lines, component)
            runs = instruction(s[component], "RUN")
            self.assertEqual(len(runs), 1, component)
            self.assertTrue(runs[0].startswith("install-packages"), component)
            self.assertLess(lines.index(copy), lines.index("RUN " + runs[0]), component)

    def test_install_packages_installs_the_list_and_the_named_packages_in_one_call(self):
        with tempfile.TemporaryDirectory() as tmp:
            # apt-get as a double that records its arguments.
            os.mkdir(os.path.join(tmp, "bin"))
            apt_get = os.path.join(tmp, "bin", "apt-get")
            with open(apt_get, "w") as f:
                f.write('#!/bin/sh\necho "$*" >> "%s/calls"\n' % tmp)
            os.chmod(apt_get, 0o755)
            package_list = os.path.join(tmp, "packages")
            with open(package_list, "w") as f:
                f.write("libc6\nlibgrpc++1.51\n")
            apt_lists = os.path.join(tmp, "lists")
            os.mkdir(apt_lists)
            open(os.path.join(apt_lists, "deb.debian.org_Packages"), "w").close()
            env = dict(os.environ, PATH=os.path.join(tmp, "bin") + ":" + os.environ["PATH"],
                       RPCI_PACKAGE_LIST=package_list, RPCI_APT_LISTS=apt_lists)
            subprocess.run([os.path.join(DOCKER, "install-packages.sh"), "openssl"], env=env, check=True)
            with open(os.path.join(tmp, "calls")) as f:
                calls = f.read().splitlines()
            self.assertEqual(calls, ["update", "install -y --no-install-recommends openssl libc6 libgrpc++1.51"])
            self.assertFalse(os.path.exists(package_list))
            self.assertEqual(os.listdir(apt_lists), [])

    def test_context_ignores_bazel_output(self):
        ignored = read("deploy/docker/Dockerfile.dockerignore").splitlines()
        self.assertIn("bazel-*", ignored)
        self.assertIn(".git", ignored)

    def test_runtime_packages_resolves_a_real_binary(self):
        script = os.path.join(DOCKER, "runtime-packages.sh")
        binary = os.path.join(ROOT, "controller/rpci-controller")
        out = subprocess.run([script, binary], capture_output=True, text=True, check=True).stdout.split()
        self.assertEqual(out, sorted(set(out)))
        self.assertIn("libc6", out)
        self.assertTrue(any(p.startswith("libgrpc++") for p in out), out)
        self.assertTrue(any(p.startswith("libcpp-httplib") for p in out), out)
        missing = subprocess.run([script, "/nonexistent/rpci"], capture_output=True, text=True)
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("/nonexistent/rpci is not an executable", missing.stderr)


if __name__ == "__main__":
    unittest.main()
