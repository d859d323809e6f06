"""vm_test: runs a test binary inside the test machine (tools/vm.sh).

The guest boots this host's kernel with the host's / read-only, so the binary
runs from its runfiles as on the host; the binary's own `data` come with it, so
`data` here is only for files the binary does not already name. Tagged "vm" (select or skip with
--test_tag_filters) and "exclusive": a TCG guest wants both cores. The binary's
gtest XML comes back as the target's test.xml; its log as an undeclared output.
"""

def vm_test(name, binary, args = [], data = [], tags = [], timeout = "long", vm_timeout = 600, **kwargs):
    native.sh_test(
        name = name,
        srcs = ["//tests/vm:vm_test.sh"],
        args = ["--vm-timeout", str(vm_timeout), "$(rootpath %s)" % binary] + args,
        data = [binary, "//tools:vm.sh"] + data,
        tags = ["vm", "exclusive"] + tags,
        timeout = timeout,
        **kwargs
    )
