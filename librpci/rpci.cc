// The C API over rpci::lib::Device.
#include "librpci/rpci.h"

#include <memory>
#include <string>

#include "librpci/device.h"

struct rpci_device {
  std::unique_ptr<rpci::lib::Device> device;
};

namespace {

thread_local std::string last_error;

int Fail(const absl::Status& s) {
  last_error = std::string(absl::StatusCodeToString(s.code())) + ": " + std::string(s.message());
  const int code = static_cast<int>(s.code());
  return code == 0 ? RPCI_EUNKNOWN : -code;
}

int Ok() {
  last_error.clear();
  return RPCI_OK;
}

int Check(const absl::Status& s) { return s.ok() ? Ok() : Fail(s); }

int Invalid(const char* what) { return Fail(absl::InvalidArgumentError(std::string("librpci: ") + what)); }

absl::Duration Millis(int ms) { return ms < 0 ? absl::InfiniteDuration() : absl::Milliseconds(ms); }

// `call` on the device behind `dev`, as a C return code; RPCI_EINVAL when
// `dev` is null.
template <typename Call>
int OnDevice(rpci_device* dev, Call call) {
  if (dev == nullptr) return Invalid("dev is null");
  return Check(call(*dev->device));
}

rpci::lib::DmaBuffer ToBuffer(const rpci_dma_buf* b) {
  return {b->device_addr, static_cast<uint8_t*>(b->host), b->size};
}

}  // namespace

extern "C" {

int rpci_device_count(int* count) {
  if (count == nullptr) return Invalid("count is null");
  absl::StatusOr<int> n = rpci::lib::DeviceCountFromEnv();
  if (!n.ok()) return Fail(n.status());
  *count = *n;
  return Ok();
}

int rpci_open_env(int index, rpci_device** dev) {
  if (dev == nullptr) return Invalid("dev is null");
  *dev = nullptr;
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> d = rpci::lib::Device::OpenFromEnv(index);
  if (!d.ok()) return Fail(d.status());
  *dev = new rpci_device{std::move(*d)};
  return Ok();
}

int rpci_open(const char* endpoint, const char* session_id, const char* key_hex, const char* provider,
              const char* fabric_node, rpci_device** dev) {
  if (dev == nullptr) return Invalid("dev is null");
  *dev = nullptr;
  if (endpoint == nullptr || session_id == nullptr || key_hex == nullptr) {
    return Invalid("endpoint, session_id and key_hex are required");
  }
  rpci::lib::DeviceConfig config;
  config.endpoint = endpoint;
  absl::StatusOr<rpci::session::SessionId> id = rpci::session::SessionId::Parse(session_id);
  if (!id.ok()) return Fail(id.status());
  config.session_id = *id;
  config.device_id = session_id;
  absl::StatusOr<rpci::session::SessionKey> key = rpci::session::SessionKey::FromHex(key_hex);
  if (!key.ok()) return Fail(key.status());
  config.key = *key;
  if (provider != nullptr) config.fabric_provider = provider;
  if (fabric_node != nullptr) config.fabric_node = fabric_node;
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> d = rpci::lib::Device::Open(config);
  if (!d.ok()) return Fail(d.status());
  *dev = new rpci_device{std::move(*d)};
  return Ok();
}

int rpci_close(rpci_device* dev) {
  if (dev == nullptr) return Ok();
  absl::Status s = dev->device->Close();
  delete dev;
  return Check(s);
}

int rpci_bar_map(rpci_device* dev, uint16_t bar, const volatile void** base, uint64_t* size) {
  if (dev == nullptr || base == nullptr || size == nullptr) return Invalid("null argument");
  absl::StatusOr<rpci::lib::BarMapping> m = dev->device->MapBar(bar);
  if (!m.ok()) return Fail(m.status());
  *base = m->base;
  *size = m->size;
  return Ok();
}

int rpci_read32(rpci_device* dev, uint16_t bar, uint64_t offset, uint32_t* value) {
  if (dev == nullptr || value == nullptr) return Invalid("null argument");
  absl::StatusOr<uint32_t> v = dev->device->Read32(bar, offset);
  if (!v.ok()) return Fail(v.status());
  *value = *v;
  return Ok();
}

int rpci_read64(rpci_device* dev, uint16_t bar, uint64_t offset, uint64_t* value) {
  if (dev == nullptr || value == nullptr) return Invalid("null argument");
  absl::StatusOr<uint64_t> v = dev->device->Read64(bar, offset);
  if (!v.ok()) return Fail(v.status());
  *value = *v;
  return Ok();
}

int rpci_write32(rpci_device* dev, uint16_t bar, uint64_t offset, uint32_t value) {
  return OnDevice(dev, [&](rpci::lib::Device& d) { return d.Write32(bar, offset, value); });
}

int rpci_write64(rpci_device* dev, uint16_t bar, uint64_t offset, uint64_t value) {
  return OnDevice(dev, [&](rpci::lib::Device& d) { return d.Write64(bar, offset, value); });
}

int rpci_flush(rpci_device* dev) {
  return OnDevice(dev, [&](rpci::lib::Device& d) { return d.Flush(); });
}

int rpci_doorbell(rpci_device* dev, uint16_t bar, uint64_t offset, uint64_t value) {
  return OnDevice(dev, [&](rpci::lib::Device& d) { return d.RingDoorbell(bar, offset, value); });
}

int rpci_doorbell32(rpci_device* dev, uint16_t bar, uint64_t offset, uint32_t value) {
  return OnDevice(dev, [&](rpci::lib::Device& d) { return d.RingDoorbell32(bar, offset, value); });
}

int rpci_refresh(rpci_device* dev, int timeout_ms) {
  return OnDevice(dev, [&](rpci::lib::Device& d) { return d.Refresh(Millis(timeout_ms)); });
}

int rpci_dma_alloc(rpci_device* dev, uint64_t size, uint64_t align, rpci_dma_buf* buf) {
  if (dev == nullptr || buf == nullptr) return Invalid("null argument");
  absl::StatusOr<rpci::lib::DmaBuffer> b = dev->device->AllocDma(size, align);
  if (!b.ok()) return Fail(b.status());
  *buf = {b->device_addr, b->host, b->size};
  return Ok();
}

int rpci_dma_free(rpci_device* dev, const rpci_dma_buf* buf) {
  if (dev == nullptr || buf == nullptr) return Invalid("null argument");
  return Check(dev->device->FreeDma(ToBuffer(buf)));
}

int rpci_dma_flush(rpci_device* dev, const rpci_dma_buf* buf, uint64_t offset, uint64_t len) {
  if (dev == nullptr || buf == nullptr) return Invalid("null argument");
  return Check(dev->device->FlushToDevice(ToBuffer(buf), offset, len));
}

int rpci_dma_sync(rpci_device* dev, const rpci_dma_buf* buf, uint64_t offset, uint64_t len) {
  if (dev == nullptr || buf == nullptr) return Invalid("null argument");
  return Check(dev->device->SyncFromDevice(ToBuffer(buf), offset, len));
}

int rpci_dma_map_from_device(rpci_device* dev, const rpci_dma_buf* buf) {
  if (dev == nullptr || buf == nullptr) return Invalid("null argument");
  return Check(dev->device->MapFromDevice(ToBuffer(buf)));
}

int rpci_wait_completion(rpci_device* dev, int timeout_ms, rpci_completion* out) {
  if (dev == nullptr || out == nullptr) return Invalid("null argument");
  absl::StatusOr<rpci::lib::Completion> c = dev->device->WaitCompletion(Millis(timeout_ms));
  if (!c.ok()) return Fail(c.status());
  *out = {c->seq, c->vector, c->cause, c->data};
  return Ok();
}

const char* rpci_strerror(int err) {
  switch (err) {
    case RPCI_OK: return "RPCI_OK: success";
    case RPCI_ECANCELLED: return "RPCI_ECANCELLED: cancelled";
    case RPCI_EUNKNOWN: return "RPCI_EUNKNOWN: unknown error";
    case RPCI_EINVAL: return "RPCI_EINVAL: invalid argument";
    case RPCI_ETIMEDOUT: return "RPCI_ETIMEDOUT: timed out";
    case RPCI_ENOTFOUND: return "RPCI_ENOTFOUND: not found";
    case RPCI_EEXIST: return "RPCI_EEXIST: already exists";
    case RPCI_EPERM: return "RPCI_EPERM: refused by the agent";
    case RPCI_ENOSPC: return "RPCI_ENOSPC: DMA space exhausted";
    case RPCI_ESTATE: return "RPCI_ESTATE: session closed or torn down";
    case RPCI_EABORTED: return "RPCI_EABORTED: aborted";
    case RPCI_ERANGE: return "RPCI_ERANGE: out of range";
    case RPCI_ENOTSUP: return "RPCI_ENOTSUP: not supported";
    case RPCI_EINTERNAL: return "RPCI_EINTERNAL: internal error";
    case RPCI_EUNAVAILABLE: return "RPCI_EUNAVAILABLE: agent unavailable";
    case RPCI_EDATALOSS: return "RPCI_EDATALOSS: acknowledged writes lost";
    case RPCI_EAUTH: return "RPCI_EAUTH: wrong session key";
    default: return "RPCI_EUNKNOWN: not an rpci error code";
  }
}

const char* rpci_last_error(void) { return last_error.c_str(); }

}  // extern "C"
