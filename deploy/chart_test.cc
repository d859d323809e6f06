// Checks the Helm chart in deploy/helm/rpci without helm or a cluster:
// values.yaml against values.schema.json, the pools it creates against the
// DevicePool CRD, the templates' references (values, named templates, files,
// component flags), and the RBAC rules against deploy/rbac-calls.yaml.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "controller/crd_codec.h"
#include "absl/strings/strip.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/ascii.h"
#include "common/testing/command.h"
#include "gtest/gtest.h"
#include "tests/schema/openapi.h"

namespace rpci {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const char kChart[] = "deploy/helm/rpci";

std::string Read(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

json LoadOne(const std::string& path) {
  absl::StatusOr<std::vector<json>> docs = schema::LoadYamlFile(path);
  EXPECT_TRUE(docs.ok()) << docs.status();
  EXPECT_TRUE(docs.ok() && docs->size() == 1) << path;
  return docs.ok() && !docs->empty() ? (*docs)[0] : json();
}

const json& Values() {
  static const json values = LoadOne(absl::StrCat(kChart, "/values.yaml"));
  return values;
}

const json& ValuesSchema() {
  static const json schema = json::parse(Read(absl::StrCat(kChart, "/values.schema.json")), nullptr, false);
  return schema;
}

std::map<std::string, std::string> Templates() {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::directory_iterator(absl::StrCat(kChart, "/templates"))) {
    out[entry.path().filename().string()] = Read(entry.path().string());
  }
  return out;
}

TEST(Chart, DescribesAHelm3ApplicationChart) {
  json chart = LoadOne(absl::StrCat(kChart, "/Chart.yaml"));
  EXPECT_EQ(chart["apiVersion"], "v2");
  EXPECT_EQ(chart["name"], "rpci");
  EXPECT_EQ(chart["type"], "application");
  EXPECT_TRUE(std::regex_match(chart.value("version", ""), std::regex(R"(^[0-9]+\.[0-9]+\.[0-9]+$)")));
  EXPECT_TRUE(chart["appVersion"].is_string());
}

TEST(Values, ValidateAgainstValuesSchema) {
  ASSERT_FALSE(ValuesSchema().is_discarded()) << "values.schema.json is not JSON";
  EXPECT_EQ(schema::Describe(schema::Validate(ValuesSchema(), Values())), "");
}

TEST(Values, SchemaRejectsBadOverridesNamingTheKey) {
  struct Case {
    std::function<void(json&)> mutate;
    std::string path;
  };
  const std::vector<Case> cases = {
      {[](json& v) { v["controller"]["replicas"] = 0; }, "controller.replicas"},
      {[](json& v) { v["tls"]["mode"] = "none"; }, "tls.mode"},
      {[](json& v) { v["plugin"]["pools"] = json::array(); }, "plugin.pools"},
      {[](json& v) { v["plugin"]["pools"][0] = "Emu"; }, "plugin.pools[0]"},
      {[](json& v) { v["agent"]["sysfsbar"] = true; }, "agent.sysfsbar"},
      {[](json& v) { v["agent"]["httpPort"] = 70000; }, "agent.httpPort"},
      {[](json& v) { v["plugin"]["kubeletDir"] = "var/lib/kubelet"; }, "plugin.kubeletDir"},
      {[](json& v) { v["controller"]["logLevel"] = "verbose"; }, "controller.logLevel"},
      {[](json& v) { v["pools"][0]["locality"] = "PreferSameNuma"; }, "pools[0].locality"},
      {[](json& v) { v["pools"][0]["spares"] = 1; }, "pools[0].spares"},
      {[](json& v) { v["controller"]["resources"]["limits"]["memory"] = true; }, "controller.resources.limits.memory"},
  };
  for (const Case& c : cases) {
    json values = Values();
    c.mutate(values);
    std::vector<schema::Violation> v = schema::Validate(ValuesSchema(), values);
    bool named = false;
    for (const auto& x : v) named = named || x.path == c.path;
    EXPECT_TRUE(named) << "expected a violation at " << c.path << ", got:\n" << schema::Describe(v);
  }
}

TEST(Values, PoolsAreValidDevicePools) {
  json crd = LoadOne("deploy/crds/devicepools.yaml");
  ASSERT_FALSE(Values()["pools"].empty());
  for (json pool : Values()["pools"]) {
    const std::string name = pool["name"];
    pool.erase("name");
    json object = {{"apiVersion", "rpci.io/v1alpha1"}, {"kind", "DevicePool"}, {"metadata", {{"name", name}}}, {"spec", pool}};
    absl::Status s = schema::ValidateObject(crd, object);
    EXPECT_TRUE(s.ok()) << s.message();
    EXPECT_TRUE(controller::PoolFromObject(object).ok()) << controller::PoolFromObject(object).status();
  }
}

// True when `path` ("controller.leaderElection.enabled") names a key in values.yaml.
bool HasValue(const std::string& path) {
  const json* node = &Values();
  for (absl::string_view view : absl::StrSplit(path, '.')) {
    const std::string part(view);
    if (node->is_array()) {
      // A list ranged over: the key must be in one of its items.
      const json* item = nullptr;
      for (const json& i : *node) {
        if (item == nullptr && i.is_object() && i.contains(part)) item = &i[part];
      }
      if (item == nullptr) return false;
      node = item;
      continue;
    }
    if (!node->is_object() || !node->contains(part)) return false;
    node = &(*node)[part];
  }
  return true;
}

TEST(Templates, ReferenceOnlyValuesThatExist) {
  // Direct references (.Values.x.y, $.Values.x, .root.Values.x) and variables
  // bound to a values subtree ({{- $c := .Values.controller -}} ... $c.grpcPort).
  const std::regex direct(R"(\.Values\.([A-Za-z0-9_.]+))");
  const std::regex binding(R"(\$([A-Za-z0-9_]+)\s*:=\s*\.Values\.([A-Za-z0-9_.]+)\s*-?\}\})");
  int references = 0;
  for (const auto& [file, text] : Templates()) {
    for (auto it = std::sregex_iterator(text.begin(), text.end(), direct); it != std::sregex_iterator(); ++it) {
      const std::string path(absl::StripSuffix((*it)[1].str(), "."));
      EXPECT_TRUE(HasValue(path)) << file << ": .Values." << path << " is not in values.yaml";
      ++references;
    }
    for (auto it = std::sregex_iterator(text.begin(), text.end(), binding); it != std::sregex_iterator(); ++it) {
      const std::string var = (*it)[1].str(), base = (*it)[2].str();
      const std::regex use("\\$" + var + R"(\.([A-Za-z0-9_.]+))");
      for (auto u = std::sregex_iterator(text.begin(), text.end(), use); u != std::sregex_iterator(); ++u) {
        const std::string path = absl::StrCat(base, ".", std::string(absl::StripSuffix((*u)[1].str(), ".")));
        EXPECT_TRUE(HasValue(path)) << file << ": $" << var << "." << (*u)[1] << " (.Values." << path
                                    << ") is not in values.yaml";
        ++references;
      }
    }
  }
  EXPECT_GT(references, 50);
}

TEST(Templates, IncludeOnlyDefinedTemplatesAndExistingFiles) {
  std::set<std::string> defined;
  const std::regex define(R"re(\{\{-?\s*define\s+"([^"]+)")re");
  const std::regex include(R"re((?:include|template)\s+"([^"]+)")re");
  const std::regex files(R"re(\.Files\.Get\s+"([^"]+)")re");
  std::map<std::string, std::string> templates = Templates();
  for (const auto& [file, text] : templates) {
    for (auto it = std::sregex_iterator(text.begin(), text.end(), define); it != std::sregex_iterator(); ++it) {
      EXPECT_TRUE(defined.insert((*it)[1]).second) << "template " << (*it)[1] << " defined twice";
    }
  }
  for (const auto& [file, text] : templates) {
    for (auto it = std::sregex_iterator(text.begin(), text.end(), include); it != std::sregex_iterator(); ++it) {
      EXPECT_TRUE(defined.count((*it)[1])) << file << ": includes undefined template " << (*it)[1];
    }
    for (auto it = std::sregex_iterator(text.begin(), text.end(), files); it != std::sregex_iterator(); ++it) {
      EXPECT_TRUE(fs::exists(absl::StrCat(kChart, "/", (*it)[1].str()))) << file << ": .Files.Get of missing " << (*it)[1];
    }
  }
}

TEST(Templates, OpenAndCloseEveryBlock) {
  const std::regex action(R"(\{\{-?\s*(if|range|with|define|else|end)\b)");
  for (const auto& [file, text] : Templates()) {
    int depth = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), action); it != std::sregex_iterator(); ++it) {
      const std::string word = (*it)[1];
      if (word == "end") {
        --depth;
      } else if (word == "else") {
        EXPECT_GT(depth, 0) << file << ": else outside a block";
      } else {
        ++depth;
      }
      ASSERT_GE(depth, 0) << file << ": end without a block";
    }
    EXPECT_EQ(depth, 0) << file << ": unclosed block";
    // Every action closes before the next one opens.
    for (size_t open = text.find("{{"); open != std::string::npos;) {
      const size_t close = text.find("}}", open + 2);
      const size_t next = text.find("{{", open + 2);
      ASSERT_NE(close, std::string::npos) << file << ": action at offset " << open << " never closes";
      EXPECT_TRUE(next == std::string::npos || close < next) << file << ": action at offset " << open << " is not closed";
      open = next;
    }
  }
}

TEST(Chart, ShipsTheSameCrdsAsDeployCrds) {
  std::set<std::string> chart, deploy;
  for (const auto& e : fs::directory_iterator(absl::StrCat(kChart, "/crds"))) chart.insert(e.path().filename());
  for (const auto& e : fs::directory_iterator("deploy/crds")) deploy.insert(e.path().filename());
  EXPECT_EQ(chart, deploy);
  for (const std::string& f : deploy) {
    EXPECT_EQ(Read(absl::StrCat(kChart, "/crds/", f)), Read("deploy/crds/" + f)) << f;
  }
}

// The --flags a binary's --help lists.
std::set<std::string> FlagsOf(const std::string& binary) {
  std::set<std::string> flags;
  const rpci::testing::CommandResult help = rpci::testing::RunCommand(binary + " --help 2>&1");
  EXPECT_EQ(help.exit_code, 0) << binary << " --help failed:\n" << help.output;
  const std::string& out = help.output;
  const std::regex flag(R"(^\s+--([a-z0-9-]+))");
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(out, '\n'))) {
    std::smatch m;
    if (std::regex_search(line, m, flag)) flags.insert(m[1]);
  }
  return flags;
}

// The --flags a template passes in container args ("- --name=..." lines).
std::set<std::string> ArgsIn(const std::string& text) {
  std::set<std::string> args;
  const std::regex arg(R"(^\s*- --([a-z0-9-]+))");
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(text, '\n'))) {
    std::smatch m;
    if (std::regex_search(line, m, arg)) args.insert(m[1]);
  }
  return args;
}

TEST(Templates, PassOnlyFlagsTheBinariesHave) {
  const std::map<std::string, std::string> binaries = {{"controller.yaml", "controller/rpci-controller"},
                                                       {"agent.yaml", "agent/rpci-agent serve"},
                                                       {"plugin.yaml", "plugin/rpci-plugin"}};
  std::map<std::string, std::string> templates = Templates();
  for (const auto& [file, binary] : binaries) {
    std::set<std::string> known = FlagsOf(binary);
    ASSERT_GT(known.size(), 5u) << binary;
    std::set<std::string> used = ArgsIn(templates[file]);
    ASSERT_GT(used.size(), 5u) << file;
    for (const std::string& f : used) EXPECT_TRUE(known.count(f)) << file << " passes --" << f << ", which " << binary << " does not have";
  }
}

// (apiGroup, resource, verb, scope, resourceNames joined by ",") tuples.
using Grant = std::tuple<std::string, std::string, std::string, std::string, std::string>;

std::string Names(const json& object) {
  std::vector<std::string> names;
  for (const json& n : object.value("resourceNames", json::array())) names.push_back(n.get<std::string>());
  return absl::StrJoin(names, ",");
}

std::set<Grant> Expand(const json& rules, const std::string& scope) {
  std::set<Grant> out;
  for (const json& rule : rules) {
    for (const json& group : rule["apiGroups"]) {
      for (const json& resource : rule["resources"]) {
        for (const json& verb : rule["verbs"]) {
          out.insert(Grant(group.get<std::string>(), resource.get<std::string>(), verb.get<std::string>(), scope,
                           Names(rule)));
        }
      }
    }
  }
  return out;
}

// The controller's calls from deploy/rbac-calls.yaml, expanded per verb.
std::set<Grant> NeededByController() {
  json calls = LoadOne("deploy/rbac-calls.yaml");
  std::set<Grant> needed;
  for (const json& call : calls["components"]["controller"]["calls"]) {
    for (const json& verb : call["verbs"]) {
      needed.insert(Grant(call["group"].get<std::string>(), call["resource"].get<std::string>(), verb.get<std::string>(),
                          call["scope"].get<std::string>(), Names(call)));
    }
  }
  return needed;
}

std::string Show(const Grant& g) {
  return absl::StrCat(std::get<0>(g).empty() ? "core" : std::get<0>(g), "/", std::get<1>(g), " ", std::get<2>(g),
                      " (", std::get<3>(g), std::get<4>(g).empty() ? "" : " names " + std::get<4>(g), ")");
}

TEST(Rbac, ControllerRulesGrantExactlyTheCallsItMakes) {
  json rules = LoadOne(absl::StrCat(kChart, "/rbac/controller.yaml"));
  const std::set<Grant> needed = NeededByController();
  std::set<Grant> granted;
  for (const auto& [key, scope] : std::map<std::string, std::string>{{"clusterRules", "cluster"},
                                                                      {"releaseNamespaceRules", "release-namespace"},
                                                                      {"eventNamespaceRules", "event-namespace"}}) {
    ASSERT_TRUE(rules.contains(key)) << key;
    for (const Grant& g : Expand(rules[key], scope)) granted.insert(g);
  }
  ASSERT_GT(needed.size(), 10u);
  for (const Grant& g : needed) EXPECT_TRUE(granted.count(g)) << "the chart does not allow " << Show(g);
  for (const Grant& g : granted) EXPECT_TRUE(needed.count(g)) << "the chart allows " << Show(g) << ", which no call needs";
  for (const Grant& g : granted) EXPECT_NE(std::get<1>(g), "*") << "wildcard resource";
  // The Lease is narrowed to the controller's own; the template names it.
  EXPECT_TRUE(needed.count(Grant("coordination.k8s.io", "leases", "update", "release-namespace", "LEASE_NAME")));
  EXPECT_NE(Templates()["rbac.yaml"].find(R"(replace "LEASE_NAME" $name)"), std::string::npos);
  EXPECT_NE(Templates()["controller.yaml"].find("--lease-name={{ $name }}"), std::string::npos);
}

// docs/crds.md's RBAC table ("| group | resource | verbs | scope | names |")
// says exactly what deploy/rbac-calls.yaml says.
TEST(Rbac, DocsListTheSameCallsAsRbacCalls) {
  const std::string doc = Read("docs/crds.md");
  const size_t table = doc.find("| group | resource | verbs | scope | resourceNames |");
  ASSERT_NE(table, std::string::npos) << "docs/crds.md has no RBAC table";
  std::set<Grant> documented;
  std::vector<std::string> lines = absl::StrSplit(doc.substr(table), '\n');
  for (size_t i = 2; i < lines.size() && absl::StartsWith(lines[i], "|"); ++i) {
    std::vector<std::string> cells = absl::StrSplit(lines[i], '|');
    ASSERT_EQ(cells.size(), 7u) << lines[i];
    for (std::string& c : cells) c = std::string(absl::StripAsciiWhitespace(absl::StrReplaceAll(c, {{"`", ""}})));
    const std::string group = cells[1] == "core" ? "" : cells[1];
    for (absl::string_view verb : absl::StrSplit(cells[3], ", ")) {
      documented.insert(Grant(group, cells[2], std::string(verb), cells[4], cells[5] == "-" ? "" : cells[5]));
    }
  }
  const std::set<Grant> needed = NeededByController();
  for (const Grant& g : needed) EXPECT_TRUE(documented.count(g)) << "docs/crds.md does not list " << Show(g);
  for (const Grant& g : documented) EXPECT_TRUE(needed.count(g)) << "docs/crds.md lists " << Show(g) << ", which rbac-calls.yaml does not";
}

TEST(Rbac, RolesAreBoundToTheControllerAndOnlyTheControllerGetsAToken) {
  json calls = LoadOne("deploy/rbac-calls.yaml");
  EXPECT_EQ(calls["components"]["agent"]["calls"], json::array());
  EXPECT_EQ(calls["components"]["plugin"]["calls"], json::array());
  std::map<std::string, std::string> t = Templates();
  const std::string& rbac = t["rbac.yaml"];
  EXPECT_NE(rbac.find(R"(.Files.Get "rbac/controller.yaml")"), std::string::npos);
  for (const char* key : {"$rules.clusterRules", "$rules.releaseNamespaceRules", "$rules.eventNamespaceRules"}) {
    EXPECT_NE(rbac.find(key), std::string::npos) << key;
  }
  // Every binding's subject is the controller's ServiceAccount.
  const std::regex subject(R"(- kind: ServiceAccount\n\s+name: ([^\n]+))");
  int bindings = 0;
  for (auto it = std::sregex_iterator(rbac.begin(), rbac.end(), subject); it != std::sregex_iterator(); ++it) {
    EXPECT_EQ((*it)[1].str(), "{{ $name }}");
    ++bindings;
  }
  EXPECT_EQ(bindings, 3);
  EXPECT_NE(rbac.find(R"($name := include "rpci.componentName" (dict "root" . "component" "controller"))"), std::string::npos);
  for (const char* file : {"agent.yaml", "plugin.yaml"}) {
    EXPECT_NE(t[file].find("automountServiceAccountToken: false"), std::string::npos) << file;
  }
  EXPECT_EQ(Values()["controller"]["eventNamespace"], "default")
      << "controller/kube/client.cc PostEvent puts Events about cluster-scoped objects in \"default\"";
}

TEST(Templates, OnlyTheControllerMountsTheCaKeyAndNodesShowAnRpciToken) {
  std::map<std::string, std::string> t = Templates();
  int ca_secret_mounts = 0;
  for (const auto& [file, text] : t) {
    if (text.find(R"(secretName: {{ include "rpci.caSecret" . }})") == std::string::npos) continue;
    if (file == "certs.yaml") continue;  // where the CA is made (generate) or referenced (certManager)
    EXPECT_EQ(file, "controller.yaml") << file << " mounts the CA Secret";
    ++ca_secret_mounts;
  }
  EXPECT_EQ(ca_secret_mounts, 1);
  EXPECT_NE(t["controller.yaml"].find("- {key: tls.key, path: tls.key}"), std::string::npos);
  EXPECT_NE(t["controller.yaml"].find("--identity-listen="), std::string::npos);
  for (const char* file : {"agent.yaml", "plugin.yaml"}) {
    EXPECT_EQ(t[file].find("initContainers"), std::string::npos) << file;
    EXPECT_EQ(t[file].find("tls.key"), std::string::npos) << file;
    EXPECT_NE(t[file].find(R"(include "rpci.nodeTlsArgs")"), std::string::npos) << file;
    EXPECT_NE(t[file].find(R"(include "rpci.nodeTlsVolumes")"), std::string::npos) << file;
  }
  const std::string& helpers = t["_helpers.tpl"];
  EXPECT_NE(helpers.find("audience: rpci"), std::string::npos);
  EXPECT_NE(helpers.find("- --token-file=/var/run/secrets/rpci/token"), std::string::npos);
  EXPECT_NE(helpers.find(R"(name: {{ include "rpci.caBundle" . }})"), std::string::npos) << "nodes read a ConfigMap";
  EXPECT_NE(helpers.find("- --insecure"), std::string::npos) << "insecure mode must say so to every component";
}

TEST(Templates, WireTheHostPathsProbesAndScrapeAnnotations) {
  std::map<std::string, std::string> t = Templates();
  auto has = [&](const std::string& file, const std::string& text) {
    EXPECT_NE(t[file].find(text), std::string::npos) << file << " lacks " << text;
  };
  for (const char* file : {"controller.yaml", "agent.yaml", "plugin.yaml"}) {
    has(file, "path: /healthz");
    has(file, "path: /readyz");
    has(file, R"(include "rpci.scrapeAnnotations")");
    has(file, "resources:");
  }
  has("_helpers.tpl", R"(prometheus.io/scrape: "true")");
  has("controller.yaml", "--leader-elect={{ $c.leaderElection.enabled }}");
  has("controller.yaml", "--lease-namespace={{ .Release.Namespace }}");
  has("agent.yaml", "hostPath: {path: /sys, type: Directory}");
  has("agent.yaml", "readOnly: {{ not $a.vfio }}");
  has("plugin.yaml", "hostPath: {path: {{ $p.kubeletDir }}/device-plugins");
  has("plugin.yaml", "hostPath: {path: {{ $p.kubeletDir }}/pod-resources");
  has("plugin.yaml", "hostPath: {path: {{ $p.cdiDir }}");
  // DRA pools (docs/dra.md): the mode from the DevicePool's allocationMode,
  // the kubelet's plugin registration dir and the driver's socket dir.
  has("plugin.yaml", "- --pools={{ join \",\" $pluginPools }}");
  has("plugin.yaml", "- --kubelet-dir={{ $p.kubeletDir }}");
  has("plugin.yaml", "hostPath: {path: {{ $p.kubeletDir }}/plugins_registry, type: Directory}");
  has("plugin.yaml", "hostPath: {path: {{ $p.kubeletDir }}/plugins/rpci.io, type: DirectoryOrCreate}");
  has("plugin.yaml", "--cdi={{ if $p.cdi }}on{{ else }}off{{ end }}");
  EXPECT_EQ(Values()["plugin"]["cdi"], false);
  EXPECT_EQ(Values()["plugin"]["kubeletDir"], "/var/lib/kubelet");
  EXPECT_EQ(Values()["plugin"]["cdiDir"], "/var/run/cdi");
  EXPECT_EQ(Values()["controller"]["replicas"], 2);
}

TEST(Templates, ADeviceClassPerDraPoolSelectsItsPoolOfDriverRpci) {
  const std::string t = Templates()["deviceclasses.yaml"];
  ASSERT_FALSE(t.empty());
  EXPECT_NE(t.find("range $pool := .Values.pools"), std::string::npos);
  EXPECT_NE(t.find(R"((eq (default "devicePlugin" $pool.allocationMode) "dra"))"), std::string::npos);
  EXPECT_NE(t.find(R"((eq (default "devicePlugin" $pool.allocationMode) "both"))"), std::string::npos);
  EXPECT_NE(t.find("kind: DeviceClass"), std::string::npos);
  EXPECT_NE(t.find("name: {{ $pool.name }}.rpci.io"), std::string::npos);
  // The selector names the attribute the controller publishes for the pool
  // (controller/resource_slices.cc SliceDevice: "pool") and its driver.
  EXPECT_NE(t.find(R"(device.driver == "rpci.io" && device.attributes["rpci.io"].pool == "{{ $pool.name }}")"),
            std::string::npos);
  EXPECT_NE(t.find(R"(.Capabilities.APIVersions.Has "resource.k8s.io/v1")"), std::string::npos);
  // allocationMode in values.yaml is one the CRD accepts (PoolsAreValidDevicePools).
  EXPECT_TRUE(HasValue("pools.allocationMode"));
}

}  // namespace
}  // namespace rpci
