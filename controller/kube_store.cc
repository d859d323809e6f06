#include "controller/kube_store.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controller/crd_codec.h"

namespace rpci::controller {
namespace {

using nlohmann::json;

std::string SecretsIn(const std::string& ns);

}  // namespace

std::string KubeStore::AttachmentsIn(const std::string& ns) {
  return absl::StrCat("/apis/rpci.io/v1alpha1/namespaces/", ns, "/deviceattachments");
}

namespace {

std::string SecretsIn(const std::string& ns) { return absl::StrCat("/api/v1/namespaces/", ns, "/secrets"); }

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> KubeStore::LoadTokens() {
  absl::StatusOr<json> secrets = client_->Get(SecretsIn(ns_));
  if (!secrets.ok()) return absl::UnavailableError(absl::StrCat("load grant Secrets: ", secrets.status().message()));
  std::map<std::string, std::string> tokens;
  for (const json& o : secrets->value("items", json::array())) {
    if (!o.is_object() || o.value("type", "") != kGrantSecretType) continue;
    absl::StatusOr<std::string> token = TokenFromGrantSecret(o);
    if (!token.ok()) {
      Logger("controller").Error("skipping bad grant Secret", {{"error", token.status().ToString()}});
      continue;
    }
    tokens[o["metadata"].value("name", "")] = *token;
  }
  return tokens;
}

absl::StatusOr<StoreSnapshot> KubeStore::Load() {
  StoreSnapshot snap;
  Logger log("controller");
  absl::StatusOr<json> devices = client_->Get(kDevicesPath);
  if (!devices.ok()) return absl::UnavailableError(absl::StrCat("load PcieDevices: ", devices.status().message()));
  for (const json& o : devices->value("items", json::array())) {
    absl::StatusOr<Device> d = DeviceFromObject(o);
    if (!d.ok()) {
      log.Error("skipping undecodable PcieDevice", {{"error", d.status().ToString()}});
      continue;
    }
    snap.devices.push_back(*std::move(d));
  }
  absl::StatusOr<json> attachments = client_->Get(AttachmentsIn(ns_));
  if (!attachments.ok()) {
    return absl::UnavailableError(absl::StrCat("load DeviceAttachments: ", attachments.status().message()));
  }
  absl::StatusOr<std::map<std::string, std::string>> tokens = LoadTokens();
  if (!tokens.ok()) return tokens.status();
  for (const json& o : attachments->value("items", json::array())) {
    absl::StatusOr<Attachment> a = AttachmentFromObject(o);
    if (!a.ok()) {
      log.Error("skipping undecodable DeviceAttachment", {{"error", a.status().ToString()}});
      continue;
    }
    auto token = tokens->find(a->grant_id);
    if (token == tokens->end()) {
      // Without its token the grant cannot be given to an agent again; the
      // pool manager detaches the device.
      log.Error("skipping DeviceAttachment without its grant Secret", {{"grant", a->grant_id}});
      continue;
    }
    a->token = token->second;
    snap.attachments.push_back(*std::move(a));
  }
  return snap;
}

absl::StatusOr<json> KubeStore::Put(const std::string& collection, const std::string& name, const json& desired) {
  const std::string path = collection + "/" + name;
  absl::StatusOr<json> current = client_->Get(path);
  if (!current.ok() && kube::HttpStatusOf(current.status()) == 404) {
    json create = desired;
    create.erase("status");
    absl::StatusOr<json> created = client_->Create(collection, create);
    if (!created.ok() && kube::HttpStatusOf(created.status()) != 409) return created.status();
  } else if (!current.ok()) {
    return current.status();
  } else if (current->value("spec", json()) != desired["spec"]) {
    absl::StatusOr<json> r = client_->ReadModifyWrite(path, false, [&](json& o) {
      if (o.value("spec", json()) == desired["spec"]) return false;
      o["spec"] = desired["spec"];
      return true;
    });
    if (!r.ok()) return r.status();
  }
  return client_->ReadModifyWrite(path, true, [&](json& o) {
    json status = desired["status"];
    // Conditions report the generation they describe.
    const int64_t gen = o["metadata"].value("generation", 0);
    if (status.contains("conditions")) {
      for (size_t i = 0; i < status["conditions"].size(); ++i) {
        status["conditions"][i]["observedGeneration"] = gen;
      }
    }
    if (o.value("status", json()) == status) return false;
    o["status"] = status;
    return true;
  });
}

absl::Status KubeStore::PutAttachment(const Attachment& a) {
  absl::StatusOr<json> stored = Put(AttachmentsIn(ns_), a.grant_id, AttachmentToObject(a, ns_));
  if (!stored.ok()) return stored.status();
  const std::string uid = (*stored)["metadata"].value("uid", "");
  // The token never changes: create once, never update.
  absl::StatusOr<json> secret = client_->Create(SecretsIn(ns_), GrantSecretToObject(a, ns_, uid));
  if (!secret.ok() && kube::HttpStatusOf(secret.status()) != 409) {
    return absl::Status(secret.status().code(),
                        absl::StrCat("grant Secret ", ns_, "/", a.grant_id, ": ", secret.status().message()));
  }
  return absl::OkStatus();
}

absl::Status KubeStore::DeleteAttachment(const std::string& grant_id) {
  for (const std::string& path :
       {absl::StrCat(AttachmentsIn(ns_), "/", grant_id), absl::StrCat(SecretsIn(ns_), "/", grant_id)}) {
    absl::Status s = client_->Delete(path);
    if (!s.ok() && kube::HttpStatusOf(s) != 404) return s;
  }
  return absl::OkStatus();
}

CommitOutcome KubeStore::Commit(const StoreBatch& batch) {
  const absl::Time now = clock_->Now();
  CommitOutcome outcome;
  auto note = [&outcome](const std::string& key, const absl::Status& s) {
    if (!s.ok()) outcome.failed[key] = s;
  };
  for (const Device& d : batch.put_devices) {
    note(DeviceStoreKey(d.id()), Put(kDevicesPath, d.id(), DeviceToObject(d, now)).status());
  }
  for (const std::string& id : batch.delete_devices) {
    absl::Status s = client_->Delete(absl::StrCat(kDevicesPath, "/", id));
    if (kube::HttpStatusOf(s) != 404) note(DeviceStoreKey(id), s);
  }
  for (const Attachment& a : batch.put_attachments) note(AttachmentStoreKey(a.grant_id), PutAttachment(a));
  for (const Attachment& a : batch.delete_attachments) {
    note(AttachmentStoreKey(a.grant_id), DeleteAttachment(a.grant_id));
  }
  return outcome;
}

std::vector<PodDemand> DemandOfPod(const json& pod) {
  std::vector<PodDemand> out;
  if (!pod.is_object()) return out;
  const json spec = pod.value("spec", json::object());
  const json status = pod.value("status", json::object());
  if (status.value("phase", "") != "Pending" || !spec.value("nodeName", "").empty()) return out;
  bool unschedulable_for_rpci = false;
  for (const json& c : status.value("conditions", json::array())) {
    if (c.is_object() && c.value("type", "") == "PodScheduled" && c.value("status", "") == "False" &&
        c.value("reason", "") == "Unschedulable" && absl::StrContains(c.value("message", ""), "rpci.io/")) {
      unschedulable_for_rpci = true;
    }
  }
  if (!unschedulable_for_rpci) return out;
  std::map<std::string, int64_t> per_pool;
  for (const json& container : spec.value("containers", json::array())) {
    const json resources = container.is_object() ? container.value("resources", json::object()) : json::object();
    json wanted = resources.value("limits", json::object());
    if (!wanted.is_object() || wanted.empty()) wanted = resources.value("requests", json::object());
    if (!wanted.is_object()) continue;
    for (auto it = wanted.begin(); it != wanted.end(); ++it) {
      if (!absl::StartsWith(it.key(), "rpci.io/")) continue;
      int64_t n = 0;
      if (it->is_number_integer()) n = it->get<int64_t>();
      else if (it->is_string() && !absl::SimpleAtoi(it->get<std::string>(), &n)) continue;
      if (n > 0) per_pool[it.key().substr(8)] += n;
    }
  }
  const json meta = pod.value("metadata", json::object());
  std::string hint;
  const json selector = spec.value("nodeSelector", json::object());
  if (selector.is_object()) hint = selector.value("kubernetes.io/hostname", "");
  for (const auto& [pool, n] : per_pool) {
    out.push_back(PodDemand{meta.value("namespace", "default"), meta.value("name", ""), pool, n, hint});
  }
  return out;
}

}  // namespace rpci::controller
