// rpci gRPC messages from peers (agents and plugins to the controller, the
// plugin or a workload to an agent), parsed from any bytes and handed to the
// pure code that consumes them: exported devices become controller Devices
// and PcieDevice objects (which must decode again) and are matched against
// pool selectors; session ids go through ParseSessionId.
#include <cstdint>
#include <cstdlib>

#include "absl/time/time.h"
#include "controller/crd_codec.h"
#include "controller/model.h"
#include "proto/rpci/v1/controller.pb.h"
#include "proto/rpci/v1/session.pb.h"
#include "session/session_id.h"

using namespace rpci;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int n = static_cast<int>(size);
  static const controller::PoolSpec pool = [] {
    controller::PoolSpec p;
    p.name = "gpu";
    p.selector = {{"rpci.io/zone", "a"}, {"vendor", "10de"}};
    return p;
  }();

  v1::RegisterAgentRequest reg;
  if (reg.ParseFromArray(data, n)) {
    for (const v1::ExportedDevice& exported : reg.devices()) {
      (void)pool.Selects(exported);
      controller::Device device;
      device.exported = exported;
      nlohmann::json object = controller::DeviceToObject(device, absl::UnixEpoch());
      (void)controller::DeviceFromObject(object);
      (void)object.dump();
    }
  }
  v1::AgentHeartbeatRequest heartbeat;
  if (heartbeat.ParseFromArray(data, n)) (void)heartbeat.ByteSizeLong();
  v1::ClaimRequest claim;
  if (claim.ParseFromArray(data, n)) (void)claim.SerializeAsString();
  v1::ReportUsageRequest usage;
  if (usage.ParseFromArray(data, n)) (void)usage.SerializeAsString();

  v1::OpenSessionRequest open;
  if (open.ParseFromArray(data, n) && !open.resume_session_id().empty()) {
    (void)session::SessionId::Parse(open.resume_session_id());
  }
  v1::OpenSessionResponse opened;
  if (opened.ParseFromArray(data, n)) (void)session::SessionId::Parse(opened.session_id());
  v1::SessionStatusRequest status;
  if (status.ParseFromArray(data, n)) (void)session::SessionId::Parse(status.session_id());
  return 0;
}
