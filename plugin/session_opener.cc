#include "plugin/session_opener.h"

#include "absl/strings/str_cat.h"

namespace rpci::plugin {
namespace {

absl::Status Named(const std::string& device_id, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("device ", device_id, ": ", s.message()));
}

}  // namespace

AgentSessionOpener::AgentSessionOpener(std::shared_ptr<grpc::ChannelCredentials> creds, std::string compute_node,
                                       absl::Duration grant_wait)
    : control_(client::ControlOptions{std::move(creds), grant_wait, absl::Seconds(5), /*quick_reconnect=*/true}),
      compute_node_(std::move(compute_node)) {}

absl::StatusOr<AttachedSession> AgentSessionOpener::Open(const rpci::v1::SessionGrant& grant,
                                                         const std::string& agent_endpoint) {
  absl::StatusOr<client::SessionTicket> ticket =
      control_.Reserve(agent_endpoint, {grant.grant_id(), grant.token(), compute_node_});
  if (!ticket.ok()) return Named(grant.device_id(), ticket.status());
  return AttachedSession{grant.device_id(), grant.grant_id(), *std::move(ticket), "", {}};
}

absl::Status AgentSessionOpener::Close(const AttachedSession& session) {
  absl::Status s = control_.Close(session.ticket);
  return s.ok() ? s : Named(session.device_id, s);
}

absl::Status AgentSessionOpener::Check(const AttachedSession& session) {
  absl::StatusOr<client::SessionState> state = control_.Status(session.ticket);
  if (!state.ok()) return Named(session.device_id, state.status());
  if (!state->live) {
    return absl::NotFoundError(absl::StrCat("device ", session.device_id, ": session ",
                                            session.ticket.session_id.ToString(), " is gone on agent ",
                                            session.ticket.endpoint));
  }
  return absl::OkStatus();
}

absl::Status AgentSessionOpener::ProbeAgent(const std::string& agent_endpoint, absl::Duration timeout) {
  return control_.Probe(agent_endpoint, timeout);
}

}  // namespace rpci::plugin
