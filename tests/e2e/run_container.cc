// run_container --response=<file> -- <command...>
// Runs the command as the container of a ContainerAllocateResponse (file: the
// serialized protobuf): exactly its environment, its mounts in a private
// mount namespace (tests/kubelet/container.h). For the end-to-end test, which
// runs the kubelet in-process and the container under `ip netns exec`.
#include <cstdio>
#include <string>
#include <vector>

#include "tests/harness/subprocess.h"
#include "tests/kubelet/container.h"

int main(int argc, char** argv) {
  std::string response_file;
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      command.assign(argv + i + 1, argv + argc);
      break;
    }
    if (a.rfind("--response=", 0) == 0) {
      response_file = a.substr(11);
      continue;
    }
    std::fprintf(stderr, "usage: run_container --response=<file> -- <command...> (bad argument %s)\n", a.c_str());
    return 2;
  }
  v1beta1::ContainerAllocateResponse response;
  if (response_file.empty() || command.empty() ||
      !response.ParseFromString(rpci::testing::ReadWholeFile(response_file))) {
    std::fprintf(stderr, "run_container: needs --response=<readable serialized response> and a command after --\n");
    return 2;
  }
  std::string error;
  rpci::testing::ExecContainer(response, command, &error);
  std::fprintf(stderr, "run_container: %s\n", error.c_str());
  return 127;
}
