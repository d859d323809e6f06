// fabric_peer: serves one registered buffer over the fabric for tests that
// need a peer in another network namespace. See peer_protocol.h.

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/fabric/fabric.h"
#include "common/fabric/fabric_flags.h"
#include "common/flags.h"
#include "common/fabric/testing/peer_protocol.h"

namespace {

int Fail(const std::string& what) {
  std::cerr << "fabric_peer: " << what << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  rpci::fabric::FabricConfig config;
  config.provider = rpci::fabric::kTcp;
  config.op_timeout = absl::Seconds(3);
  int64_t size = 1 << 20;
  rpci::FlagSet flags("fabric_peer [flags]",
                      "Serves one remotely readable and writable buffer over libfabric for tests. Prints READY "
                      "<address hex> <remote address> <key> <size>, reads PEER <hex> on stdin, then answers fabric "
                      "messages \"digest\" and \"quit\".");
  rpci::fabric::AddFlags(flags, &config);
  flags.Int("size", &size, "bytes of the served buffer (at most 1 GiB)");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  if (size <= 0 || size > (int64_t{1} << 30)) return Fail("bad --size " + std::to_string(size));
  auto fabric = rpci::fabric::Fabric::Open(config);
  if (!fabric.ok()) return Fail(fabric.status().ToString());
  auto ep = (*fabric)->OpenEndpoint();
  if (!ep.ok()) return Fail(ep.status().ToString());
  std::vector<uint8_t> buffer(static_cast<size_t>(size));
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = rpci::fabric::testing::PeerPattern(i);
  auto mr = (*ep)->RegisterMemory(buffer.data(), buffer.size(),
                                  rpci::fabric::kRemoteRead | rpci::fabric::kRemoteWrite);
  if (!mr.ok()) return Fail(mr.status().ToString());
  const rpci::fabric::RemoteRegion remote = (*mr)->remote();
  std::cout << "READY " << absl::BytesToHexString((*ep)->address()) << " " << remote.address << " " << remote.key
            << " " << remote.size << std::endl;

  std::string line;
  if (!std::getline(std::cin, line) || !absl::StartsWith(line, "PEER ")) return Fail("expected PEER line");
  auto peer = (*ep)->InsertPeer(absl::HexStringToBytes(line.substr(5)));
  if (!peer.ok()) return Fail(peer.status().ToString());
  while (true) {
    absl::StatusOr<std::string> message = (*ep)->Recv(absl::Seconds(20));
    if (!message.ok()) return Fail(message.status().ToString());
    if (*message == "quit") {
      (*ep)->Send(*peer, "bye").IgnoreError();
      return 0;
    }
    if (*message == "digest") {
      absl::Status s = (*ep)->Send(*peer, "digest " + rpci::fabric::testing::Digest(buffer.data(), buffer.size()));
      if (!s.ok()) return Fail(s.ToString());
    }
  }
}
