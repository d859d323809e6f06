// Which local address reaches a peer: what endpoints bind to (the
// route's source address) and, through it, which NIC a session uses.

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/fabric/fabric.h"

namespace rpci::fabric {

// The local address this host uses to reach `endpoint`'s host (a connected
// UDP socket sends nothing but has the route's source address).
absl::StatusOr<std::string> LocalAddressFor(const std::string& endpoint) {
  std::string target = endpoint;
  for (const char* scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme)) target = target.substr(std::strlen(scheme));
  }
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("fabric: endpoint \"%s\" is not host:port", endpoint));
  }
  std::string host = target.substr(0, colon), port = target.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_family = AF_INET;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(
        absl::StrFormat("fabric: endpoint %s: cannot resolve %s: %s", endpoint, host, gai_strerror(rc)));
  }
  std::string out;
  for (addrinfo* ai = res; ai != nullptr && out.empty(); ai = ai->ai_next) {
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    char buf[INET_ADDRSTRLEN] = {};
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf)) != nullptr) {
      out = buf;
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (out.empty()) {
    return absl::UnavailableError(absl::StrFormat("fabric: endpoint %s: no route to %s", endpoint, host));
  }
  return out;
}

absl::StatusOr<std::string> NetdevWithAddress(const std::string& address) {
  in_addr want{};
  if (inet_pton(AF_INET, address.c_str(), &want) != 1) {
    return absl::InvalidArgumentError(absl::StrFormat("fabric: \"%s\" is not an IPv4 address", address));
  }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return absl::UnavailableError(absl::StrFormat("fabric: getifaddrs: %s", std::strerror(errno)));
  }
  std::string name;
  for (ifaddrs* i = list; i != nullptr && name.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    if (reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == want.s_addr) name = i->ifa_name;
  }
  freeifaddrs(list);
  if (name.empty()) return absl::NotFoundError(absl::StrFormat("fabric: no network device has address %s", address));
  return name;
}

}  // namespace rpci::fabric
