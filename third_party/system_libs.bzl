"""Repository rule exposing Debian's system libraries as cc_library targets.

Link flags come from pkg-config at fetch time, so Debian's namespaced absl
libraries that gRPC needs are linked in full.
"""

# name -> (pkg-config modules, extra include dirs under /usr)
_LIBS = {
    "grpc": (["grpc++", "protobuf"], []),
    "protobuf": (["protobuf"], []),
    "absl": (["absl_status", "absl_statusor", "absl_strings", "absl_str_format", "absl_synchronization", "absl_time"], []),
    "fabric": (["libfabric"], []),
    "ibverbs": (["libibverbs"], []),
    "pci": (["libpci"], ["include/x86_64-linux-gnu"]),
    "yaml_cpp": (["yaml-cpp"], []),
    "ssl": (["openssl"], []),
    "gtest": (["gtest", "gmock"], []),
    "gtest_main": (["gtest_main", "gtest", "gmock"], []),
}

def _system_libs_impl(ctx):
    ctx.symlink("/usr/include", "include")
    build = ['package(default_visibility = ["//visibility:public"])', ""]
    for name, (modules, _extra) in _LIBS.items():
        res = ctx.execute(["pkg-config", "--libs"] + modules)
        if res.return_code != 0:
            fail("pkg-config %s failed (install the -dev packages with tools/install_deps.sh): %s" % (" ".join(modules), res.stderr))
        flags = [f for f in res.stdout.strip().split(" ") if f]
        build.append("cc_library(")
        build.append('    name = "%s",' % name)
        build.append("    linkopts = %s," % repr(flags + ["-lpthread"]))
        build.append(")")
        build.append("")
    # Header-only libraries: found on the default include path.
    for name in ["json", "httplib"]:
        build.append('cc_library(name = "%s")' % name)
    ctx.file("BUILD.bazel", "\n".join(build) + "\n")
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)

system_libs = repository_rule(
    implementation = _system_libs_impl,
    local = True,
)
