#include "common/tls_node_certificate.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/grpc_util.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/identity.grpc.pb.h"

namespace rpci {
namespace {

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("token file ", path, ": cannot open"));
  std::stringstream buf;
  buf << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(buf.str()));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": empty"));
  return token;
}

// The controller said no for a reason that asking again will not change.
bool IsRefusal(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnauthenticated || s.code() == absl::StatusCode::kPermissionDenied ||
         s.code() == absl::StatusCode::kInvalidArgument;
}

TlsFiles FilesIn(const std::string& dir) { return {dir + "/tls.crt", dir + "/tls.key", dir + "/ca.crt"}; }

}  // namespace

absl::StatusOr<TlsMaterial> RequestNodeCertificate(const NodeCertificateOptions& o) {
  absl::StatusOr<std::string> token = ReadToken(o.token_file);
  if (!token.ok()) return token.status();
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeCaOnlyChannelCredentials(o.ca_file);
  if (!creds.ok()) return creds.status();
  const std::string common_name = absl::StrCat(o.role, ":", o.node);
  absl::StatusOr<CertificateRequest> csr = NewCertificateRequest(common_name);
  if (!csr.ok()) return csr.status();

  rpci::v1::IssueCertificateRequest req;
  req.set_role(o.role);
  req.set_node(o.node);
  req.set_token(*token);
  req.set_csr_pem(csr->csr_pem);
  for (const std::string& ip : o.ip_addresses) req.add_ip_addresses(ip);
  rpci::v1::IssueCertificateResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + o.request_timeout));
  auto stub = rpci::v1::NodeIdentity::NewStub(grpc::CreateChannel(o.identity_address, *creds));
  grpc::Status s = stub->IssueCertificate(&ctx, req, &resp);
  if (!s.ok()) {
    return FromGrpc(s, absl::StrCat("controller ", o.identity_address, " issued no certificate for ", common_name));
  }
  TlsMaterial tls;
  tls.cert_pem = resp.certificate_pem();
  tls.key_pem = csr->key_pem;
  tls.ca_pem = resp.ca_pem();
  tls.common_name = common_name;
  return tls;
}

NodeCertificateRenewer::NodeCertificateRenewer(NodeCertificateOptions options, const Logger& log)
    : options_(std::move(options)), log_(log) {}

absl::StatusOr<std::unique_ptr<NodeCertificateRenewer>> NodeCertificateRenewer::Start(
    NodeCertificateOptions options, absl::Duration first_deadline, const Logger& log) {
  if (options.cert_dir.empty()) return absl::InvalidArgumentError("node certificate: cert dir not set");
  mkdir(options.cert_dir.c_str(), 0700);
  std::unique_ptr<NodeCertificateRenewer> r(new NodeCertificateRenewer(std::move(options), log));
  const absl::Time deadline = absl::Now() + first_deadline;
  absl::Status s = r->Renew();
  while (!s.ok() && !IsRefusal(s) && absl::Now() + r->options_.retry_interval < deadline) {
    r->log_.Warn("no node certificate yet; retrying", {{"error", s.ToString()}});
    absl::SleepFor(r->options_.retry_interval);
    s = r->Renew();
  }
  if (!s.ok()) return s;
  r->thread_ = std::thread([p = r.get()] { p->Loop(); });
  return r;
}

NodeCertificateRenewer::~NodeCertificateRenewer() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

absl::Status NodeCertificateRenewer::Renew() {
  absl::StatusOr<TlsMaterial> tls = RequestNodeCertificate(options_);
  if (!tls.ok()) return tls.status();
  absl::StatusOr<CertificateInfo> info = ReadCertificateInfo(tls->cert_pem);
  if (!info.ok()) return absl::InternalError(absl::StrCat("controller's certificate: ", info.status().message()));
  const TlsFiles files = FilesIn(options_.cert_dir);
  // Key before certificate: the credentials keep the last pair that matches.
  for (const auto& [path, data, mode] : {std::tuple<std::string, std::string, mode_t>{files.ca_file, tls->ca_pem, 0644},
                                         {files.key_file, tls->key_pem, 0600},
                                         {files.cert_file, tls->cert_pem, 0644}}) {
    if (absl::Status s = WriteFileAtomically(path, data, mode); !s.ok()) return s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!current_.common_name.empty()) ++renewals_;
  current_ = *info;
  issued_at_ = absl::Now();
  log_.Info("node certificate issued", {{"common_name", info->common_name},
                                        {"not_after", absl::FormatTime(absl::RFC3339_sec, info->not_after,
                                                                       absl::UTCTimeZone())}});
  return absl::OkStatus();
}

void NodeCertificateRenewer::Loop() {
  while (true) {
    absl::Time when;
    {
      std::lock_guard<std::mutex> lock(mu_);
      when = issued_at_ + (current_.not_after - issued_at_) * options_.renew_fraction;
    }
    if (stop_.WaitForNotificationWithDeadline(when)) return;
    for (absl::Status s = Renew(); !s.ok(); s = Renew()) {
      log_.Error("node certificate renewal failed; retrying",
                 {{"error", s.ToString()},
                  {"expires", absl::FormatTime(absl::RFC3339_sec, current().not_after, absl::UTCTimeZone())}});
      if (stop_.WaitForNotificationWithTimeout(options_.retry_interval)) return;
    }
  }
}

TlsFiles NodeCertificateRenewer::files() const { return FilesIn(options_.cert_dir); }

CertificateInfo NodeCertificateRenewer::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

int NodeCertificateRenewer::renewals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return renewals_;
}

}  // namespace rpci
