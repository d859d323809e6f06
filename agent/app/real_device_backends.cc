#include "agent/app/real_device_backends.h"

#include <memory>
#include <string>

#include "agent/backends/emu_backend.h"
#include "agent/vfio/vfio_backend.h"

namespace rpci::agent {

DeviceBackends RealDeviceBackends() {
  DeviceBackends b;
  b.emu = [](const EmuDevicesConfig& config, int) -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
    absl::StatusOr<std::unique_ptr<EmuBackend>> emu = EmuBackend::Create(static_cast<uint64_t>(config.dma_size));
    if (!emu.ok()) return emu.status();
    return std::unique_ptr<SessionDevice>(*std::move(emu));
  };
  b.vfio = [](const AgentOptions& options, const rpci::v1::PcieFunction& fn)
      -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
    vfio::VfioBackendOptions o;
    o.vfio.bind.sysfs_root = options.sysfs_root;
    o.vfio.bind.bdf = fn.bdf();
    o.vfio.bind.allow_unbind = options.vfio_allow_unbind;
    o.dma_size = static_cast<uint64_t>(options.vfio_dma_size);
    absl::StatusOr<std::unique_ptr<vfio::VfioBackend>> dev = vfio::VfioBackend::Open(o);
    if (!dev.ok()) return dev.status();
    return std::unique_ptr<SessionDevice>(*std::move(dev));
  };
  return b;
}

}  // namespace rpci::agent
