"""rpci_fuzz_test: one fuzz target, two builds.

- `<name>_regression` (a cc_test in the default suite) replays the seed corpus
  and every past finding through the target with a plain main;
- `<name>_fuzzer` (manual) links libFuzzer under `--config=fuzz` (clang),
  run by tools/fuzz.sh for a bounded time.
"""

load("//tools:copts.bzl", "RPCI_COPTS")

def rpci_fuzz_test(name, srcs, deps, corpus):
    """Declares a fuzz target.

    Args:
      name: base name.
      srcs: sources defining LLVMFuzzerTestOneInput.
      deps: libraries under test.
      corpus: glob of seed and regression inputs.
    """
    native.filegroup(
        name = name + "_corpus",
        srcs = corpus,
    )
    native.cc_test(
        name = name + "_regression",
        srcs = srcs,
        copts = RPCI_COPTS,
        deps = deps + ["//fuzz:regression_main"],
        data = [":" + name + "_corpus"],
        args = ["$(locations :%s_corpus)" % name],
    )
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        srcs = srcs,
        copts = RPCI_COPTS,
        deps = deps,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
    )
