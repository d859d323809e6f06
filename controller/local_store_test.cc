#include "controller/local_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include "common/log.h"
#include "common/testing/manual_clock.h"
#include "controller/crd_codec.h"
#include "controller/testing/registrations.h"
#include "gtest/gtest.h"

namespace rpci::controller {
namespace {

Device MakeDevice(const std::string& id, const std::string& node) {
  Device d;
  d.exported.set_id(id);
  d.exported.set_node("dev-a");
  d.exported.set_pool("emu");
  d.exported.mutable_function()->set_bdf("0000:3b:00.0");
  (*d.exported.mutable_labels())["topology.kubernetes.io/zone"] = "z1";
  d.assigned_node = node;
  d.assigned_changed = absl::FromUnixSeconds(1700000000);
  return d;
}

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    dir_ = testing::MakeTempDir("store");
  }
  std::unique_ptr<LocalStore> Open() {
    auto s = LocalStore::Open(dir_, &clock_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  ManualClock clock_;
  std::string dir_;
};

TEST_F(LocalStoreTest, CommittedStateSurvivesReopen) {
  {
    auto store = Open();
    StoreBatch b;
    b.put_devices = {MakeDevice("d1", "cn-1"), MakeDevice("d2", "")};
    Attachment a;
    a.grant_id = "g-1";
    a.device_id = "d1";
    a.node = "cn-1";
    a.pod_namespace = "ml";
    a.pod_name = "p";
    a.token = std::string("\x00\x01\xff", 3);
    b.put_attachments = {a};
    ASSERT_TRUE(store->Commit(b).ok());
    StoreBatch del;
    del.delete_devices = {"d2"};
    ASSERT_TRUE(store->Commit(del).ok());
  }
  auto store = Open();
  auto snap = store->Load();
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->devices.size(), 1u);
  EXPECT_EQ(snap->devices[0].id(), "d1");
  EXPECT_EQ(snap->devices[0].assigned_node, "cn-1");
  EXPECT_EQ(snap->devices[0].exported.labels().at("topology.kubernetes.io/zone"), "z1");
  EXPECT_EQ(snap->devices[0].exported.function().bdf(), "0000:3b:00.0");
  ASSERT_EQ(snap->attachments.size(), 1u);
  EXPECT_EQ(snap->attachments[0].token, std::string("\x00\x01\xff", 3));
  EXPECT_EQ(snap->attachments[0].pod_namespace, "ml");
}

TEST_F(LocalStoreTest, TornJournalTailIsIgnored) {
  {
    auto store = Open();
    StoreBatch b;
    b.put_devices = {MakeDevice("d1", "cn-1")};
    ASSERT_TRUE(store->Commit(b).ok());
  }
  {
    // A crash in the middle of appending the next batch.
    std::ofstream j(dir_ + "/journal.jsonl", std::ios::app);
    j << "{\"put_devices\":[{\"apiVersion\":\"rpci.io/v1al";
  }
  auto store = Open();
  auto snap = store->Load();
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->devices.size(), 1u);
  // And the next commit lands on a clean line.
  StoreBatch b;
  b.put_devices = {MakeDevice("d2", "")};
  ASSERT_TRUE(store->Commit(b).ok());
  store.reset();
  EXPECT_EQ(Open()->Load()->devices.size(), 2u);
}

TEST_F(LocalStoreTest, CorruptJournalBeforeTheEndIsDataLoss) {
  {
    std::ofstream j(dir_ + "/journal.jsonl");
    j << "garbage\n{}\n";
  }
  auto store = LocalStore::Open(dir_, &clock_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(store.status().message().find("journal.jsonl:1"), std::string::npos);
}

TEST_F(LocalStoreTest, CompactionWritesSnapshotAndEmptiesJournal) {
  {
    auto opened = LocalStore::Open(dir_, &clock_, /*min_compact_bytes=*/16 << 10);
    ASSERT_TRUE(opened.ok());
    auto store = *std::move(opened);
    for (int i = 0; i < 200; ++i) {
      StoreBatch b;
      b.put_devices = {MakeDevice("d" + std::to_string(i % 50), "cn-" + std::to_string(i))};
      ASSERT_TRUE(store->Commit(b).ok());
    }
    EXPECT_LT(store->journal_bytes(), size_t{64} << 10);
  }
  std::ifstream snap(dir_ + "/state.json");
  EXPECT_TRUE(snap.good());
  auto store = Open();
  auto loaded = store->Load();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->devices.size(), 50u);
  for (const Device& d : loaded->devices) {
    if (d.id() == "d49") {
      EXPECT_EQ(d.assigned_node, "cn-199");
    }
  }
}

TEST_F(LocalStoreTest, SecondControllerCannotOpenTheSameDirectory) {
  auto first = Open();
  auto second = LocalStore::Open(dir_, &clock_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LocalStoreTest, UndecodableObjectIsSkippedNotFatal) {
  {
    std::ofstream j(dir_ + "/journal.jsonl");
    j << R"({"put_devices":[{"kind":"PcieDevice","metadata":{"name":"bad"},"spec":{"function":7}}]})" << "\n";
  }
  auto store = Open();
  auto snap = store->Load();
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->devices.empty());
}

// The snapshot is replayed element by element: what is not an object in
// its arrays (or has no name) is passed over, the rest loads.
TEST_F(LocalStoreTest, SnapshotElementsThatAreNotObjectsArePassedOver) {
  {
    std::ofstream snap(dir_ + "/state.json");
    snap << R"({"attachments":[7,[1,2]],"devices":[)" << DeviceToText(MakeDevice("d1", "cn-1"), clock_.Now())
         << R"(,"d9",null,{"nested":{"metadata":{"name":"inner"}}},)"
         << DeviceToText(MakeDevice("d2", ""), clock_.Now()) << "]}";
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto snap = store->Load();
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_EQ(snap->devices.size(), 2u);
  EXPECT_EQ(snap->devices[0].id(), "d1");
  EXPECT_EQ(snap->devices[0].assigned_node, "cn-1");
  EXPECT_EQ(snap->devices[1].id(), "d2");
  EXPECT_TRUE(snap->attachments.empty());
  store.reset();
  // What was passed over never reaches the next snapshot: it reopens whole.
  {
    auto compacting = LocalStore::Open(dir_, &clock_, /*min_compact_bytes=*/1);
    ASSERT_TRUE(compacting.ok()) << compacting.status();
    StoreBatch b;
    for (int i = 3; i < 9; ++i) b.put_devices.push_back(MakeDevice("d" + std::to_string(i), ""));
    ASSERT_TRUE((*compacting)->Commit(b).ok());
    ASSERT_EQ((*compacting)->journal_bytes(), 0u);  // compacted into a new snapshot
  }
  store = Open();
  ASSERT_NE(store, nullptr);
  snap = store->Load();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->devices.size(), 8u);
}

TEST(DeviceCodecTest, DeviceTextParsesToTheSameObject) {
  Device d = MakeDevice("d1", "cn-1");
  d.drain_requested = true;
  d.health_reason = "link \"down\"";
  const absl::Time now = absl::FromUnixSeconds(1700000100);
  const nlohmann::json parsed = nlohmann::json::parse(DeviceToText(d, now, 3), nullptr, false);
  ASSERT_FALSE(parsed.is_discarded());
  EXPECT_EQ(parsed, DeviceToObject(d, now, 3));
}

TEST_F(LocalStoreTest, SnapshotAndJournalHoldTheSameObjectsAfterCompaction) {
  auto s = LocalStore::Open(dir_, &clock_, /*min_compact_bytes=*/1);
  ASSERT_TRUE(s.ok()) << s.status();
  StoreBatch b;
  for (int i = 0; i < 20; ++i) b.put_devices.push_back(MakeDevice("d" + std::to_string(i), i % 2 ? "cn-1" : ""));
  ASSERT_TRUE((*s)->Commit(b).ok());
  StoreBatch more;
  more.put_devices = {MakeDevice("d3", "cn-9")};
  more.delete_devices = {"d4"};
  ASSERT_TRUE((*s)->Commit(more).ok());
  s->reset();
  auto reopened = Open();
  auto snap = reopened->Load();
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_EQ(snap->devices.size(), 19u);
  for (const Device& d : snap->devices) {
    EXPECT_NE(d.id(), "d4");
    EXPECT_EQ(d.exported.function().bdf(), "0000:3b:00.0");
    if (d.id() == "d3") {
      EXPECT_EQ(d.assigned_node, "cn-9");
    }
  }
}

TEST(PoolCodecTest, BadPoolFieldsAreReportedByPath) {
  auto pool = PoolFromObject(nlohmann::json::parse(
      R"({"kind":"DevicePool","metadata":{"name":"gpu"},
          "spec":{"sparesPerNode":"two","locality":"moon","selector":{"matchLabels":{"a":1}},"typo":1}})"));
  ASSERT_FALSE(pool.ok());
  std::string msg(pool.status().message());
  EXPECT_NE(msg.find("sparesPerNode"), std::string::npos) << msg;
  EXPECT_NE(msg.find("locality"), std::string::npos) << msg;
  EXPECT_NE(msg.find("typo"), std::string::npos) << msg;
  EXPECT_NE(msg.find("matchLabels"), std::string::npos) << msg;
}

TEST(PoolCodecTest, PoolRoundTrips) {
  PoolSpec p;
  p.name = "gpu";
  p.selector = {{"rack", "r1"}};
  p.spares_per_node = 2;
  p.max_per_node = 4;
  p.idle_release_seconds = 600;
  p.locality = Locality::kZone;
  auto back = PoolFromObject(PoolToObject(p));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->selector, p.selector);
  EXPECT_EQ(back->spares_per_node, 2);
  EXPECT_EQ(back->max_per_node, 4);
  EXPECT_EQ(back->idle_release_seconds, 600);
  EXPECT_EQ(back->locality, Locality::kZone);
}

}  // namespace
}  // namespace rpci::controller
