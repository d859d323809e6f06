"""rpci_proto_library: C++ (and optionally gRPC) code generated with the system protoc.

Debian's protoc and grpc_cpp_plugin run in a genrule; nothing generated is checked in.
"""

def rpci_proto_library(name, srcs, deps = [], grpc = False, alwayslink = False, visibility = None):
    """Generates <src>.pb.{h,cc} (and .grpc.pb.{h,cc} when grpc) and wraps them in a cc_library.

    Args:
      name: the cc_library's name; `<name>_files` is the filegroup of .proto sources.
      srcs: .proto files in this package, imported by their workspace path.
      deps: other rpci_proto_library targets whose protos these import.
      grpc: also generate gRPC service stubs.
      alwayslink: link the descriptors into every binary, even where nothing
        names them (a file that declares only a service over another file's
        messages): the descriptor pool then knows its service.
      visibility: visibility of the cc_library.
    """
    native.filegroup(
        name = name + "_files",
        srcs = srcs + [d + "_files" for d in deps],
        visibility = visibility,
    )
    stems = [s[:-len(".proto")] for s in srcs]
    outs = []
    for s in stems:
        outs += [s + ".pb.h", s + ".pb.cc"]
        if grpc:
            outs += [s + ".grpc.pb.h", s + ".grpc.pb.cc"]
    pkg = native.package_name()
    src_paths = " ".join([pkg + "/" + s for s in srcs])
    cmd = "/usr/bin/protoc -I. -I/usr/include --cpp_out=$(GENDIR)"
    if grpc:
        cmd += " --grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin"
    native.genrule(
        name = name + "_gen",
        srcs = [name + "_files"],
        outs = outs,
        cmd = cmd + " " + src_paths,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:grpc" if grpc else "@system//:protobuf"],
        alwayslink = alwayslink,
        visibility = visibility,
    )
