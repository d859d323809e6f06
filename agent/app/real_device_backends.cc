#include "agent/app/real_device_backends.h"

#include <memory>
#include <string>

#include "agent/backends/emu_backend.h"
#include "agent/backends/sysfs_bar_backend.h"

namespace rpci::agent {

DeviceBackends RealDeviceBackends(bool allow_sysfs_bar) {
  DeviceBackends b;
  b.emu = [](const EmuDevicesConfig& config, int) -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
    absl::StatusOr<std::unique_ptr<EmuBackend>> emu = EmuBackend::Create(static_cast<uint64_t>(config.dma_size));
    if (!emu.ok()) return emu.status();
    return std::unique_ptr<SessionDevice>(*std::move(emu));
  };
  b.sysfs_bar = [allow_sysfs_bar](const std::string& sysfs_root, const rpci::v1::PcieFunction& fn)
      -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
    SysfsBarOptions o;
    o.sysfs_root = sysfs_root;
    o.bdf = fn.bdf();
    o.allow = allow_sysfs_bar;
    absl::StatusOr<std::unique_ptr<SysfsBarBackend>> bar = SysfsBarBackend::Open(o);
    if (!bar.ok()) return bar.status();
    return std::unique_ptr<SessionDevice>(*std::move(bar));
  };
  return b;
}

}  // namespace rpci::agent
