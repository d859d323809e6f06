#include "librpci/testing/loopback_agent.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/testing/temp_dir.h"

namespace rpci::lib::testing {

absl::StatusOr<std::unique_ptr<LoopbackAgent>> LoopbackAgent::Start(
    std::map<std::string, agent::SessionDevice*> devices) {
  std::unique_ptr<LoopbackAgent> a(new LoopbackAgent());
  for (const auto& [id, dev] : devices) a->grants_.Upsert({"grant-" + id, id, "node", "token", absl::InfiniteFuture()});
  agent::SessionServerOptions opts;
  opts.metrics = &a->metrics_;
  absl::StatusOr<std::unique_ptr<agent::testing::LoopbackSessionServer>> served =
      agent::testing::LoopbackSessionServer::Start(opts, &a->grants_, std::move(devices));
  if (!served.ok()) return served.status();
  a->served_ = *std::move(served);
  a->endpoint_ = a->served_->endpoint();
  a->key_dir_ = ::rpci::testing::MakeTempDir("rpci-lib");
  return a;
}

LoopbackAgent::~LoopbackAgent() {
  served_.reset();
  std::error_code ec;
  if (!key_dir_.empty()) std::filesystem::remove_all(key_dir_, ec);
}

absl::StatusOr<std::map<std::string, std::string>> LoopbackAgent::ReserveEnv(
    const std::vector<std::string>& device_ids) {
  std::map<std::string, std::string> env;
  for (size_t i = 0; i < device_ids.size(); ++i) {
    absl::StatusOr<client::SessionTicket> t =
        client::ControlClient().Reserve(endpoint_, {"grant-" + device_ids[i], "token", "node"});
    if (!t.ok()) return t.status();
    const std::string key_file = absl::StrCat(key_dir_, "/key-", reserved_++);
    int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return absl::InternalError("loopback agent: cannot write " + key_file);
    const std::string text = t->key.Hex() + "\n";
    const bool wrote = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!wrote) return absl::InternalError("loopback agent: short write to " + key_file);
    const std::string p = absl::StrCat("RPCI_", i, "_");
    env[p + "DEVICE_ID"] = device_ids[i];
    env[p + "SESSION_ENDPOINT"] = endpoint_;
    env[p + "SESSION_ID"] = t->session_id.ToString();
    env[p + "SESSION_KEY_FILE"] = key_file;
    env[p + "FABRIC_PROVIDER"] = "tcp;ofi_rxm";
    env[p + "BARS"] = client::FormatBarList(t->bars);
    env[p + "DMA_SIZE"] = absl::StrCat(t->dma_size);
    if (i == 0) {
      env["RPCI_SESSION_ENDPOINT"] = endpoint_;
      env["RPCI_SESSION_ID"] = t->session_id.ToString();
      env["RPCI_SESSION_KEY_FILE"] = key_file;
    }
  }
  env["RPCI_DEVICE_IDS"] = absl::StrJoin(device_ids, ",");
  env["RPCI_DEVICE_COUNT"] = std::to_string(device_ids.size());
  return env;
}

}  // namespace rpci::lib::testing
