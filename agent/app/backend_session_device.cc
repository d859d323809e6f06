#include "agent/app/backend_session_device.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "agent/backends/emu_backend.h"
#include "agent/backends/sysfs_bar_backend.h"

namespace rpci::agent {

BackendSessionDevice::BackendSessionDevice(std::unique_ptr<DeviceBackend> backend) : backend_(std::move(backend)) {
  dma_ = backend_->dma();
  if (dma_ == nullptr) {
    own_dma_ = std::make_unique<DmaSpace>(4096);
    dma_ = own_dma_.get();
  }
}

std::vector<SessionDevice::Bar> BackendSessionDevice::Bars() const {
  std::vector<Bar> out;
  for (const BarWindow& w : backend_->Bars()) out.push_back(Bar{w.index, w.size, w.writable});
  return out;
}

absl::Status BackendSessionDevice::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  if (width == 4) return backend_->Write32(bar, offset, static_cast<uint32_t>(value));
  if (width == 8) return backend_->Write64(bar, offset, value);
  return absl::InvalidArgumentError(absl::StrCat("BAR", bar, " +0x", absl::Hex(offset), ": width ", width,
                                                 " (4 or 8)"));
}

absl::Status BackendSessionDevice::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  if (offset % 4 != 0 || len % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("BAR", bar, " read +0x", absl::Hex(offset), " len ", len, ": not 32-bit aligned"));
  }
  for (uint64_t at = 0; at < len; at += 4) {
    absl::StatusOr<uint32_t> v = backend_->Read32(bar, offset + at);
    if (!v.ok()) return v.status();
    std::memcpy(out + at, &*v, 4);  // little-endian host, as the BAR is
  }
  return absl::OkStatus();
}

std::vector<SessionDevice::Interrupt> BackendSessionDevice::TakeInterrupts() {
  std::vector<Interrupt> out;
  for (const DeviceInterrupt& i : backend_->Poll()) out.push_back(Interrupt{i.vector, i.cause, i.data});
  return out;
}

DeviceBackends RealDeviceBackends(bool allow_sysfs_bar) {
  DeviceBackends b;
  b.emu = [](const EmuDevicesConfig& config, int) -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
    absl::StatusOr<std::unique_ptr<EmuBackend>> emu = EmuBackend::Create(static_cast<uint64_t>(config.dma_size));
    if (!emu.ok()) return emu.status();
    return std::unique_ptr<SessionDevice>(std::make_unique<BackendSessionDevice>(*std::move(emu)));
  };
  b.sysfs_bar = [allow_sysfs_bar](const std::string& sysfs_root, const rpci::v1::PcieFunction& fn)
      -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
    SysfsBarOptions o;
    o.sysfs_root = sysfs_root;
    o.bdf = fn.bdf();
    o.allow = allow_sysfs_bar;
    absl::StatusOr<std::unique_ptr<SysfsBarBackend>> bar = SysfsBarBackend::Open(o);
    if (!bar.ok()) return bar.status();
    return std::unique_ptr<SessionDevice>(std::make_unique<BackendSessionDevice>(*std::move(bar)));
  };
  return b;
}

}  // namespace rpci::agent
