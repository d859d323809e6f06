// run_container --response=<file> [--user=UID:GID[:G1,G2...]] -- <command...>
// Runs the command as the container of a ContainerAllocateResponse (file: the
// serialized protobuf): exactly its environment, its mounts in a private
// mount namespace (tests/kubelet/container.h). For the end-to-end test, which
// runs the kubelet in-process and the container under `ip netns exec`.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tests/harness/subprocess.h"
#include "tests/kubelet/container.h"

int main(int argc, char** argv) {
  std::string response_file;
  std::vector<std::string> command;
  rpci::testing::ContainerUser user;
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
    if (a.rfind("--user=", 0) == 0) {  // a pod's runAsUser:runAsGroup:supplementalGroups
      std::vector<std::string> parts = absl::StrSplit(a.substr(7), ':');
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[0], &user.uid) && absl::SimpleAtoi(parts[1], &user.gid)) {
        bool ok = true;
        for (absl::string_view g : absl::StrSplit(parts.size() > 2 ? parts[2] : "", ',', absl::SkipEmpty())) {
          int gid = 0;
          ok = ok && absl::SimpleAtoi(g, &gid);
          user.supplemental_groups.push_back(gid);
        }
        if (ok && parts.size() <= 3) continue;
      }
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
  rpci::testing::ExecContainer(response, command, &error, user);
  std::fprintf(stderr, "run_container: %s\n", error.c_str());
  return 127;
}
