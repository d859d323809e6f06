#include "tests/kubelet/container.h"

#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace rpci::testing {
namespace {

std::string Errno(const std::string& what) { return what + ": " + strerror(errno); }

// A bind mount of `host` at `target` (a file is created for it to cover).
bool BindFile(const std::string& host, const std::string& target, std::string* error) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(target).parent_path(), ec);
  if (FILE* f = std::fopen(target.c_str(), "a"); f != nullptr) std::fclose(f);
  if (mount(host.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    *error = Errno("bind " + host + " -> " + target);
    return false;
  }
  return true;
}

// /dev as a runtime makes it: a fresh tmpfs with the default nodes (null,
// zero, full, random, urandom, tty), /dev/shm, and exactly the response's
// device specs (host path at container path). Device permissions are not
// enforced (no device cgroup), so `permissions` is not applied.
bool SetUpDev(const v1beta1::ContainerAllocateResponse& response, std::string* error) {
  // The host's /dev stays reachable at `host` (in this mount namespace only)
  // while the new one is filled, then goes.
  char tmpl[] = "/tmp/rpci-container-dev-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    *error = Errno("mkdtemp");
    return false;
  }
  const std::string host = tmpl;
  if (mount("/dev", host.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    *error = Errno("bind /dev -> " + host);
    return false;
  }
  bool ok = mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755") == 0;
  if (!ok) *error = Errno("tmpfs on /dev");
  for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"}) {
    ok = ok && BindFile(host + "/" + node, std::string("/dev/") + node, error);
  }
  for (const v1beta1::DeviceSpec& d : response.devices()) {
    std::string rel = d.host_path();
    if (rel.rfind("/dev/", 0) != 0) {
      *error = "device " + rel + " is not under /dev";
      ok = false;
    }
    ok = ok && BindFile(host + rel.substr(4), d.container_path(), error);
  }
  umount2(host.c_str(), MNT_DETACH);
  rmdir(host.c_str());
  if (!ok) return false;
  std::filesystem::create_directories("/dev/shm");
  if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) {
    *error = Errno("tmpfs on /dev/shm");
    return false;
  }
  return true;
}

bool SetUpMounts(const v1beta1::ContainerAllocateResponse& response, std::string* error) {
  if (unshare(CLONE_NEWNS) != 0) {
    if (response.mounts_size() == 0 && response.devices_size() == 0) return true;  // nothing to apply
    *error = Errno("unshare(CLONE_NEWNS)");
    return false;
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    *error = Errno("making / private");
    return false;
  }
  if (!SetUpDev(response, error)) return false;
  for (const v1beta1::Mount& m : response.mounts()) {
    std::error_code ec;
    std::filesystem::create_directories(m.container_path(), ec);
    if (ec) {
      *error = "mount point " + m.container_path() + ": " + ec.message();
      return false;
    }
    if (mount(m.host_path().c_str(), m.container_path().c_str(), nullptr, MS_BIND, nullptr) != 0) {
      *error = Errno("bind " + m.host_path() + " -> " + m.container_path());
      return false;
    }
    if (m.read_only() &&
        mount(nullptr, m.container_path().c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      *error = Errno("read-only remount of " + m.container_path());
      return false;
    }
  }
  return true;
}

std::vector<char*> Argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

void ExecContainer(const v1beta1::ContainerAllocateResponse& response, const std::vector<std::string>& argv,
                   std::string* error, const ContainerUser& user) {
  if (argv.empty()) {
    *error = "no command";
    return;
  }
  if (!SetUpMounts(response, error)) return;
  if (user.uid >= 0) {
    std::vector<gid_t> groups(user.supplemental_groups.begin(), user.supplemental_groups.end());
    if (setgroups(groups.size(), groups.data()) != 0 || setgid(static_cast<gid_t>(user.gid)) != 0 ||
        setuid(static_cast<uid_t>(user.uid)) != 0) {
      *error = Errno("become uid " + std::to_string(user.uid));
      return;
    }
  }
  // Sanitizer settings are the test run's, not the pod's: a sanitized
  // workload keeps them so its suppressions and halt_on_error apply.
  std::vector<std::pair<std::string, std::string>> kept;
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"}) {
    if (const char* v = getenv(name); v != nullptr) kept.emplace_back(name, v);
  }
  clearenv();
  for (const auto& [k, v] : kept) setenv(k.c_str(), v.c_str(), 1);
  for (const auto& [k, v] : response.envs()) setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> cargv = Argv(argv);
  execv(cargv[0], cargv.data());
  *error = Errno("exec " + argv[0]);
}

int RunContainer(const v1beta1::ContainerAllocateResponse& response, const std::vector<std::string>& argv,
                 bool isolate) {
  pid_t pid = fork();
  if (pid == 0) {
    std::string error;
    if (isolate) {
      ExecContainer(response, argv, &error);
    } else {
      for (const auto& [k, v] : response.envs()) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> cargv = Argv(argv);
      execvp(cargv[0], cargv.data());
      error = Errno("exec " + argv[0]);
    }
    std::fprintf(stderr, "container: %s\n", error.c_str());
    _exit(127);
  }
  if (pid < 0) return 127;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace rpci::testing
