"""Repository rule exposing Debian's system libraries as cc_library targets.

Link flags come from pkg-config at fetch time, so Debian's namespaced absl
libraries that gRPC needs are linked in full.
"""

# name -> pkg-config modules. Include dirs are gcc's defaults on Debian
# (/usr/include and its multiarch dir); -D flags become `defines`.
_LIBS = {
    "grpc": ["grpc++", "protobuf"],
    "protobuf": ["protobuf"],
    "absl": ["absl_status", "absl_statusor", "absl_strings", "absl_str_format", "absl_synchronization", "absl_time"],
    "fabric": ["libfabric"],
    "ibverbs": ["libibverbs"],
    "pci": ["libpci"],
    "yaml_cpp": ["yaml-cpp"],
    # prometheus-cpp's core library only (registry, families, TextSerializer);
    # /metrics is served by our own HTTP server, not its civetweb exposer.
    "prometheus": ["prometheus-cpp-core"],
    "ssl": ["openssl"],
    "gtest": ["gtest", "gmock"],
    "gtest_main": ["gtest_main", "gtest", "gmock"],
    # Debian builds cpp-httplib as a shared library with OpenSSL, zlib, brotli.
    "httplib": ["cpp-httplib", "openssl"],
}

def _pkg_config(ctx, args):
    res = ctx.execute(["pkg-config"] + args)
    if res.return_code != 0:
        fail("pkg-config %s failed (install the -dev packages with tools/install_deps.sh): %s" % (" ".join(args), res.stderr))
    return [f for f in res.stdout.strip().split(" ") if f]

def _system_libs_impl(ctx):
    ctx.symlink("/usr/include", "include")
    build = ['package(default_visibility = ["//visibility:public"])', ""]
    for name, modules in _LIBS.items():
        libs = _pkg_config(ctx, ["--libs"] + modules)
        defines = [f[2:] for f in _pkg_config(ctx, ["--cflags"] + modules) if f.startswith("-D")]
        build.append("cc_library(")
        build.append('    name = "%s",' % name)
        build.append("    defines = %s," % repr(defines))
        build.append("    linkopts = %s," % repr(libs + ["-lpthread"]))
        build.append(")")
        build.append("")
    # Header-only libraries: found on the default include path.
    for name in ["json"]:
        build.append('cc_library(name = "%s")' % name)
    ctx.file("BUILD.bazel", "\n".join(build) + "\n")
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)

system_libs = repository_rule(
    implementation = _system_libs_impl,
    local = True,
)
