// fabric_peer: serves one registered buffer over the fabric for tests that
// need a peer in another network namespace. See peer_protocol.h.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/fabric/fabric.h"
#include "common/fabric/testing/peer_protocol.h"

namespace {

constexpr char kUsage[] =
    "usage: fabric_peer [--provider P] [--node ADDR] [--size BYTES]\n"
    "Serves one remotely readable and writable buffer over libfabric for tests.\n"
    "Prints READY <address hex> <remote address> <key> <size>, reads PEER <hex>\n"
    "on stdin, then answers fabric messages \"digest\" and \"quit\".\n";

int Fail(const std::string& what) {
  std::cerr << "fabric_peer: " << what << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  rpci::fabric::FabricConfig config;
  config.provider = rpci::fabric::kTcp;
  config.op_timeout = absl::Seconds(3);
  size_t size = 1 << 20;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) return Fail("missing value for " + arg + "\n" + kUsage);
    std::string value = argv[++i];
    if (arg == "--provider") {
      config.provider = value;
    } else if (arg == "--node") {
      config.node = value;
    } else if (arg == "--size") {
      size = std::strtoull(value.c_str(), nullptr, 10);
      if (size == 0 || size > (1u << 30)) return Fail("bad --size " + value);
    } else {
      return Fail("unknown flag " + arg + "\n" + kUsage);
    }
  }
  auto fabric = rpci::fabric::Fabric::Open(config);
  if (!fabric.ok()) return Fail(fabric.status().ToString());
  auto ep = (*fabric)->OpenEndpoint();
  if (!ep.ok()) return Fail(ep.status().ToString());
  std::vector<uint8_t> buffer(size);
  for (size_t i = 0; i < size; ++i) buffer[i] = rpci::fabric::testing::PeerPattern(i);
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
