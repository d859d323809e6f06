#include "librpci/device.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/fabric/fabric.h"
#include "common/tls.h"

namespace rpci::lib {

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

EnvLookup MapEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

namespace {

// RPCI_<index>_<name>, falling back to the unindexed RPCI_<name> for device 0
// (the plugin sets both for the first device).
std::optional<std::string> DeviceVar(const EnvLookup& env, int index, const std::string& name) {
  if (auto v = env(absl::StrCat("RPCI_", index, "_", name)); v.has_value() && !v->empty()) return v;
  if (index == 0) {
    if (auto v = env("RPCI_" + name); v.has_value() && !v->empty()) return v;
  }
  return std::nullopt;
}

absl::StatusOr<std::string> RequiredVar(const EnvLookup& env, int index, const std::string& name) {
  std::optional<std::string> v = DeviceVar(env, index, name);
  if (!v.has_value()) {
    return absl::NotFoundError(absl::StrFormat("librpci: device %d: RPCI_%d_%s is not set", index, index, name));
  }
  return *v;
}

absl::StatusOr<session::SessionKey> ReadKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrFormat("librpci: session key file %s: %s", path, std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<session::SessionKey> key = session::SessionKey::FromHex(std::string(absl::StripAsciiWhitespace(text.str())));
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("librpci: session key file %s: %s", path, key.status().message()));
  }
  return key;
}

}  // namespace

absl::StatusOr<int> DeviceCountFromEnv(const EnvLookup& env) {
  if (std::optional<std::string> count = env("RPCI_DEVICE_COUNT"); count.has_value() && !count->empty()) {
    int n = 0;
    if (!absl::SimpleAtoi(*count, &n) || n < 0 || n > 1024) {
      return absl::InvalidArgumentError("librpci: RPCI_DEVICE_COUNT=\"" + *count + "\" is not a device count");
    }
    return n;
  }
  if (std::optional<std::string> ids = env("RPCI_DEVICE_IDS"); ids.has_value() && !ids->empty()) {
    return static_cast<int>(std::vector<std::string>(absl::StrSplit(*ids, ',', absl::SkipEmpty())).size());
  }
  return absl::NotFoundError("librpci: no rpci devices in this environment (RPCI_DEVICE_COUNT / RPCI_DEVICE_IDS unset)");
}

absl::StatusOr<DeviceConfig> ConfigFromEnv(int index, const EnvLookup& env) {
  if (index < 0) return absl::InvalidArgumentError(absl::StrFormat("librpci: device index %d", index));
  DeviceConfig c;
  if (auto id = DeviceVar(env, index, "DEVICE_ID"); id.has_value()) {
    c.device_id = *id;
  } else if (auto ids = env("RPCI_DEVICE_IDS"); ids.has_value()) {
    std::vector<std::string> all = absl::StrSplit(*ids, ',', absl::SkipEmpty());
    if (static_cast<size_t>(index) < all.size()) c.device_id = all[index];
  }
  absl::StatusOr<std::string> endpoint = RequiredVar(env, index, "SESSION_ENDPOINT");
  if (!endpoint.ok()) return endpoint.status();
  c.endpoint = *endpoint;
  absl::StatusOr<std::string> id = RequiredVar(env, index, "SESSION_ID");
  if (!id.ok()) return id.status();
  absl::StatusOr<session::SessionId> parsed = session::SessionId::Parse(*id);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("librpci: device %d: RPCI_%d_SESSION_ID=\"%s\": %s", index, index, *id, parsed.status().message()));
  }
  c.session_id = *parsed;
  absl::StatusOr<std::string> key_file = RequiredVar(env, index, "SESSION_KEY_FILE");
  if (!key_file.ok()) return key_file.status();
  absl::StatusOr<session::SessionKey> key = ReadKeyFile(*key_file);
  if (!key.ok()) return key.status();
  c.key = *key;
  if (auto p = DeviceVar(env, index, "FABRIC_PROVIDER"); p.has_value()) c.fabric_provider = *p;
  if (auto ca = DeviceVar(env, index, "CA_FILE"); ca.has_value()) c.ca_file = *ca;
  if (auto n = DeviceVar(env, index, "FABRIC_NODE"); n.has_value()) {
    c.fabric_node = *n;
  } else if (auto g = env("RPCI_FABRIC_NODE"); g.has_value() && !g->empty()) {
    c.fabric_node = *g;
  }
  std::optional<std::string> bars = DeviceVar(env, index, "BARS");
  std::optional<std::string> dma = DeviceVar(env, index, "DMA_SIZE");
  if (bars.has_value() && dma.has_value()) {  // the shape; without both, the attach asks the agent
    absl::StatusOr<std::vector<client::BarMirror>> parsed_bars = client::ParseBarList(*bars);
    if (!parsed_bars.ok()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("librpci: device %d: RPCI_%d_BARS: %s", index, index, parsed_bars.status().message()));
    }
    if (!absl::SimpleAtoi(*dma, &c.dma_size) || c.dma_size == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("librpci: device %d: RPCI_%d_DMA_SIZE=\"%s\" is not a size in bytes", index, index, *dma));
    }
    c.bars = *std::move(parsed_bars);
  }
  if (c.device_id.empty()) c.device_id = c.session_id.ToString();
  return c;
}

Device::Device(DeviceConfig config, std::unique_ptr<client::SessionClient> client)
    : config_(std::move(config)), client_(std::move(client)), dma_(client_->dma_size()) {}

Device::~Device() = default;

absl::StatusOr<std::unique_ptr<Device>> Device::Open(const DeviceConfig& config, const client::ClientOptions& options) {
  client::ClientOptions opts = options;
  opts.fabric.provider = config.fabric_provider;
  if (!config.fabric_node.empty()) {
    opts.fabric.node = config.fabric_node;
  } else {
    absl::StatusOr<std::string> node = fabric::LocalAddressFor(config.endpoint);
    if (!node.ok()) return node.status();
    opts.fabric.node = *node;
  }
  if (!config.ca_file.empty() && opts.creds == nullptr) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeCaOnlyChannelCredentials(config.ca_file);
    if (!creds.ok()) {
      return absl::Status(creds.status().code(),
                          absl::StrCat("librpci: device ", config.device_id, ": ", creds.status().message()));
    }
    opts.creds = *std::move(creds);
  }
  client::SessionTicket ticket{config.endpoint, config.session_id, config.key, config.fabric_provider,
                               config.bars, config.dma_size};
  absl::StatusOr<std::unique_ptr<client::SessionClient>> c = client::SessionClient::Attach(ticket, opts);
  if (!c.ok()) {
    return absl::Status(c.status().code(),
                        absl::StrCat("librpci: device ", config.device_id, ": ", c.status().message()));
  }
  return std::unique_ptr<Device>(new Device(config, std::move(*c)));
}

absl::StatusOr<std::unique_ptr<Device>> Device::OpenFromEnv(int index, const EnvLookup& env) {
  absl::StatusOr<DeviceConfig> config = ConfigFromEnv(index, env);
  if (!config.ok()) return config.status();
  return Open(*config);
}

std::vector<client::BarMirror> Device::bars() const { return client_->bars(); }

uint64_t Device::dma_size() const { return client_->dma_size(); }

absl::StatusOr<BarMapping> Device::MapBar(uint16_t bar) {
  for (const client::BarMirror& b : client_->bars()) {
    if (b.index != bar) continue;
    absl::StatusOr<const uint8_t*> base = client_->mirror(bar);
    if (!base.ok()) return base.status();
    return BarMapping{bar, *base, b.size};
  }
  return absl::NotFoundError(absl::StrFormat("librpci: device %s has no BAR %u", config_.device_id, bar));
}

absl::StatusOr<uint64_t> Device::ReadOrdered(uint16_t bar, uint64_t offset, uint8_t width) {
  bool refresh = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    refresh = writes_posted_;
  }
  if (refresh) {
    // Validate before paying for a round trip.
    if (absl::StatusOr<uint64_t> probe = client_->Read(bar, offset, width); !probe.ok()) return probe.status();
    if (absl::Status s = Refresh(absl::Seconds(10)); !s.ok()) return s;
  }
  return client_->Read(bar, offset, width);
}

absl::StatusOr<uint32_t> Device::Read32(uint16_t bar, uint64_t offset) {
  absl::StatusOr<uint64_t> v = ReadOrdered(bar, offset, 4);
  if (!v.ok()) return v.status();
  return static_cast<uint32_t>(*v);
}

absl::StatusOr<uint64_t> Device::Read64(uint16_t bar, uint64_t offset) { return ReadOrdered(bar, offset, 8); }

absl::Status Device::Post(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  absl::Status s = client_->Write(bar, offset, width, value);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    writes_posted_ = true;
  }
  return s;
}

absl::Status Device::Write32(uint16_t bar, uint64_t offset, uint32_t value) { return Post(bar, offset, 4, value); }

absl::Status Device::Write64(uint16_t bar, uint64_t offset, uint64_t value) { return Post(bar, offset, 8, value); }

absl::Status Device::Flush() { return client_->Flush(); }

absl::Status Device::RingDoorbell(uint16_t bar, uint64_t offset, uint64_t value) {
  if (absl::Status s = Write64(bar, offset, value); !s.ok()) return s;
  return client_->Flush();
}

absl::Status Device::RingDoorbell32(uint16_t bar, uint64_t offset, uint32_t value) {
  if (absl::Status s = Write32(bar, offset, value); !s.ok()) return s;
  return client_->Flush();
}

absl::Status Device::Refresh(absl::Duration timeout) {
  const uint64_t posted = client_->posted_seq();
  absl::Status s = client_->Refresh(timeout);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    // Writes posted by other threads meanwhile keep the flag set.
    writes_posted_ = client_->posted_seq() != posted;
  }
  return s;
}

absl::StatusOr<DmaBuffer> Device::AllocDma(uint64_t size, uint64_t align) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<uint64_t> off = dma_.Allocate(size, align);
  if (!off.ok()) {
    return absl::Status(off.status().code(),
                        absl::StrCat("librpci: device ", config_.device_id, ": ", off.status().message()));
  }
  return DmaBuffer{*off, client_->dma() + *off, size};
}

absl::Status Device::CheckBuffer(const DmaBuffer& buffer, uint64_t offset, uint64_t len) const {
  absl::StatusOr<uint64_t> size = dma_.SizeOf(buffer.device_addr);
  if (!size.ok() || *size != buffer.size || buffer.host != client_->dma() + buffer.device_addr) {
    return absl::NotFoundError(absl::StrFormat("librpci: device %s: dma buffer at 0x%x is not allocated",
                                               config_.device_id, buffer.device_addr));
  }
  if (offset > buffer.size || len > buffer.size - offset) {
    return absl::OutOfRangeError(absl::StrFormat("librpci: range [0x%x, +%u) is outside the %u-byte dma buffer", offset,
                                                 len, buffer.size));
  }
  return absl::OkStatus();
}

absl::Status Device::FreeDma(const DmaBuffer& buffer) {
  bool mapped = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status s = CheckBuffer(buffer, 0, 0); !s.ok()) return s;
    mapped = from_device_.erase(buffer.device_addr) > 0;
    if (absl::Status s = dma_.Free(buffer.device_addr); !s.ok()) return s;
  }
  if (mapped) return client_->Unmap(buffer.device_addr);
  return absl::OkStatus();
}

absl::Status Device::FlushToDevice(const DmaBuffer& buffer, uint64_t offset, uint64_t len) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status s = CheckBuffer(buffer, offset, len); !s.ok()) return s;
  }
  if (len == 0) return absl::OkStatus();
  return client_->FlushDma(buffer.device_addr + offset, len);
}

absl::Status Device::SyncFromDevice(const DmaBuffer& buffer, uint64_t offset, uint64_t len) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status s = CheckBuffer(buffer, offset, len); !s.ok()) return s;
  }
  if (len == 0) return absl::OkStatus();
  return client_->InvalidateDma(buffer.device_addr + offset, len);
}

absl::Status Device::MapFromDevice(const DmaBuffer& buffer) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status s = CheckBuffer(buffer, 0, buffer.size); !s.ok()) return s;
    from_device_[buffer.device_addr] = true;
  }
  return client_->MapFromDevice(buffer.device_addr, buffer.size);
}

absl::StatusOr<Completion> Device::WaitCompletion(absl::Duration timeout) {
  const uint64_t posted = client_->posted_seq();
  absl::StatusOr<session::Completion> c = client_->WaitCompletion(timeout);
  if (!c.ok()) return c.status();
  if (c->applied_mmio_seq >= posted) {
    // The mirror was pushed after every write posted before the wait.
    std::lock_guard<std::mutex> lock(mu_);
    writes_posted_ = client_->posted_seq() != posted;
  }
  return Completion{c->seq, c->vector, c->cause, c->data};
}

absl::Status Device::Close() { return client_->Close(); }

client::ClientStats Device::stats() const { return client_->stats(); }

}  // namespace rpci::lib
