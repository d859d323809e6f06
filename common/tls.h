#ifndef RPCI_COMMON_TLS_H_
#define RPCI_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_context.h"

namespace rpci {

// Where a component's mTLS material lives (PEM files, e.g. a mounted Secret).
struct TlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
};

// Loaded and checked mTLS material: the certificate parses, the key matches
// it, and the CA bundle parses.
struct TlsMaterial {
  std::string cert_pem;
  std::string key_pem;
  std::string ca_pem;
  std::string common_name;  // of cert_pem
};

// Reads and checks the three files. NOT_FOUND / INVALID_ARGUMENT naming the
// file and what is wrong with it.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files);

// What a TLS server asks of its clients' certificates.
enum class ClientCertPolicy {
  // Every client must present a certificate signed by the CA (mTLS between
  // components).
  kRequire,
  // A client may present one (then it must verify against the CA, and
  // GetPeerIdentity names it) or none (GetPeerIdentity says UNAUTHENTICATED,
  // the call proceeds and the service decides). The agent's session server:
  // plugins present theirs, workloads hold only the CA and a session key.
  kRequestAndVerifyIfPresent,
};

// Server credentials presenting our certificate, with `policy` for clients'
// certificates signed by the CA.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsMaterial& tls,
                                                               ClientCertPolicy policy = ClientCertPolicy::kRequire);

// Client credentials presenting our certificate and verifying the server's
// against the CA.
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsMaterial& tls);

// As the two above, but reading `files` again every `refresh`: a renewed
// certificate, key or CA bundle (rewritten in place) is used by the next
// connection, without a restart. Call LoadTlsMaterial(files) first to fail at
// start on bad files; later bad rewrites keep the last good material.
std::shared_ptr<grpc::ServerCredentials> MakeReloadingServerCredentials(const TlsFiles& files,
                                                                        ClientCertPolicy policy,
                                                                        absl::Duration refresh);
std::shared_ptr<grpc::ChannelCredentials> MakeReloadingChannelCredentials(const TlsFiles& files,
                                                                          absl::Duration refresh);

// Client credentials that verify the server's certificate against the CA
// bundle in `ca_file` and present none (a workload that holds only the CA,
// docs/librpci.md). NOT_FOUND / INVALID_ARGUMENT naming the file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCaOnlyChannelCredentials(const std::string& ca_file);

// Who is calling, from the verified client certificate. Certificates name
// their holder in the common name as "<role>:<node>" (e.g. "agent:node-a",
// "plugin:node-b") or "<role>" for node-less components ("controller").
struct PeerIdentity {
  std::string role;
  std::string node;  // empty for node-less roles
};

// UNAUTHENTICATED when the call carries no verified certificate (plaintext
// channels), INVALID_ARGUMENT for a common name without a role.
absl::StatusOr<PeerIdentity> GetPeerIdentity(const grpc::ServerContext& context);

// Parses "<role>[:<node>]".
absl::StatusOr<PeerIdentity> ParsePeerIdentity(const std::string& common_name);

}  // namespace rpci

#endif  // RPCI_COMMON_TLS_H_
