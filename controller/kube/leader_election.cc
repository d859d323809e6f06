#include "controller/kube/leader_election.h"

#include "absl/strings/str_cat.h"

namespace rpci::kube {
namespace {

using nlohmann::json;

std::string MicroTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

}  // namespace

LeaderElector::LeaderElector(KubeClient* client, const Clock* clock, Options options)
    : client_(client), clock_(clock), options_(std::move(options)),
      log_(Logger("controller").With("lease", options_.name)) {}

std::string LeaderElector::LeasePath() const {
  return absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", options_.ns, "/leases/", options_.name);
}

std::string LeaderElector::holder() const {
  std::lock_guard<std::mutex> lock(mu_);
  return holder_;
}

bool LeaderElector::TryAcquireOrRenew() {
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  const int64_t duration_s = absl::ToInt64Seconds(options_.lease_duration);
  auto step_down_if_stale = [&] {
    if (leader_ && now - last_renew_ > options_.renew_deadline) {
      leader_ = false;
      log_.Warn("could not renew the lease in time; stepping down", {{"identity", options_.identity}});
    }
    return leader_.load();
  };
  absl::StatusOr<json> lease = client_->Get(LeasePath());
  if (!lease.ok() && HttpStatusOf(lease.status()) == 404) {
    json fresh = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", options_.name}, {"namespace", options_.ns}}},
                  {"spec",
                   {{"holderIdentity", options_.identity},
                    {"leaseDurationSeconds", duration_s},
                    {"acquireTime", MicroTime(now)},
                    {"renewTime", MicroTime(now)},
                    {"leaseTransitions", 0}}}};
    absl::StatusOr<json> created =
        client_->Create(absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", options_.ns, "/leases"), fresh);
    if (!created.ok()) return step_down_if_stale();
    holder_ = options_.identity;
    last_renew_ = now;
    if (!leader_) log_.Info("became leader (new lease)", {{"identity", options_.identity}});
    leader_ = true;
    return true;
  }
  if (!lease.ok()) return step_down_if_stale();
  json spec = lease->value("spec", json::object());
  const std::string holder = spec.value("holderIdentity", "");
  const std::string record = spec.dump();
  if (record != observed_record_) {
    observed_record_ = record;
    observed_time_ = now;
  }
  int64_t their_duration = spec.value("leaseDurationSeconds", duration_s);
  const bool expired = observed_time_ + absl::Seconds(their_duration) <= now;
  if (!holder.empty() && holder != options_.identity && !expired) {
    holder_ = holder;
    if (leader_) log_.Warn("lease held by another; stepping down", {{"holder", holder}});
    leader_ = false;
    return false;
  }
  json next = *lease;
  const bool ours = holder == options_.identity;
  next["spec"]["holderIdentity"] = options_.identity;
  next["spec"]["leaseDurationSeconds"] = duration_s;
  next["spec"]["renewTime"] = MicroTime(now);
  if (!ours) {
    next["spec"]["acquireTime"] = MicroTime(now);
    next["spec"]["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  absl::StatusOr<json> written = client_->Update(LeasePath(), next);
  if (!written.ok()) {
    if (HttpStatusOf(written.status()) == 409) {
      leader_ = false;  // someone else wrote first
      return false;
    }
    return step_down_if_stale();
  }
  observed_record_ = written->value("spec", json::object()).dump();
  observed_time_ = now;
  holder_ = options_.identity;
  last_renew_ = now;
  if (!leader_) log_.Info("became leader", {{"identity", options_.identity}, {"previous", holder}});
  leader_ = true;
  return true;
}

absl::Status LeaderElector::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!leader_) return absl::OkStatus();
  leader_ = false;
  absl::StatusOr<json> r = client_->ReadModifyWrite(LeasePath(), false, [&](json& lease) {
    if (lease["spec"].value("holderIdentity", "") != options_.identity) return false;
    lease["spec"]["holderIdentity"] = "";
    lease["spec"]["leaseDurationSeconds"] = 1;
    lease["spec"]["renewTime"] = MicroTime(clock_->Now());
    return true;
  });
  holder_.clear();
  log_.Info("released the lease", {{"identity", options_.identity}});
  return r.status();
}

}  // namespace rpci::kube
