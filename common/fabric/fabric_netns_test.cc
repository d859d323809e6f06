// The fabric between two hosts: this test joins one network namespace, and
// fabric_peer serves a buffer from the other, over a veth pair.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fabric/fabric.h"
#include "common/fabric/testing/peer_protocol.h"
#include "gtest/gtest.h"
#include "tests/harness/netns.h"

namespace rpci::fabric {
namespace {

// fabric_peer running under `ip netns exec`, with pipes to its stdin/stdout.
class PeerProcess {
 public:
  ~PeerProcess() { Kill(); }

  bool Start(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    return pid_ > 0;
  }

  std::string ReadLine() {
    char buf[4096];
    if (from_ == nullptr || fgets(buf, sizeof(buf), from_) == nullptr) return "";
    std::string line(buf);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    return line;
  }

  void WriteLine(const std::string& line) {
    fputs((line + "\n").c_str(), to_);
    fflush(to_);
  }

  // Exit status once it exits, -1 if killed or still running after `wait`.
  int Wait(absl::Duration wait) {
    absl::Time deadline = absl::Now() + wait;
    while (pid_ > 0 && absl::Now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return -1;
  }

  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (to_ != nullptr) fclose(to_);
    if (from_ != nullptr) fclose(from_);
    to_ = from_ = nullptr;
  }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

// Moves the calling thread (and threads it starts later) into a named
// network namespace for its lifetime, then back.
class InNamespace {
 public:
  explicit InNamespace(const std::string& ns) {
    home_ = open("/proc/thread-self/ns/net", O_RDONLY);
    int target = open(("/var/run/netns/" + ns).c_str(), O_RDONLY);
    ok_ = home_ >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0;
    if (target >= 0) close(target);
  }
  ~InNamespace() {
    if (ok_) setns(home_, CLONE_NEWNET);
    if (home_ >= 0) close(home_);
  }
  bool ok() const { return ok_; }

 private:
  int home_ = -1;
  bool ok_ = false;
};

class FabricNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!rpci::testing::CanUseNetworkNamespaces(&why)) GTEST_SKIP() << "needs network namespaces: " << why;
    absl::StatusOr<rpci::testing::VethPair> pair = rpci::testing::VethPair::Create("fab");
    ASSERT_TRUE(pair.ok()) << pair.status();
    pair_ = std::make_unique<rpci::testing::VethPair>(std::move(*pair));
    StartPeer(pair_->ExecIn(1, {"common/fabric/testing/fabric_peer", "--node", pair_->addr_b(), "--size",
                                std::to_string(kSize)}),
              pair_->ns_a(), pair_->addr_a());
  }

  void StartPeer(const std::vector<std::string>& argv, const std::string& our_ns, const std::string& our_addr) {
    ASSERT_TRUE(peer_.Start(argv));
    std::istringstream ready(peer_.ReadLine());
    std::string word, address_hex;
    ready >> word >> address_hex >> remote_.address >> remote_.key >> remote_.size;
    ASSERT_EQ(word, "READY");
    ASSERT_EQ(remote_.size, kSize);

    if (!our_ns.empty()) {
      ns_ = std::make_unique<InNamespace>(our_ns);
      ASSERT_TRUE(ns_->ok()) << "setns into " << our_ns;
    }
    FabricConfig config;
    config.provider = kTcp;
    config.node = our_addr;
    config.op_timeout = absl::Seconds(2);
    absl::StatusOr<std::unique_ptr<Fabric>> fabric = Fabric::Open(config);
    ASSERT_TRUE(fabric.ok()) << fabric.status();
    fabric_ = std::move(*fabric);
    absl::StatusOr<std::unique_ptr<Endpoint>> ep = fabric_->OpenEndpoint();
    ASSERT_TRUE(ep.ok()) << ep.status();
    ep_ = std::move(*ep);
    absl::StatusOr<PeerId> peer = ep_->InsertPeer(absl::HexStringToBytes(address_hex));
    ASSERT_TRUE(peer.ok()) << peer.status();
    peer_id_ = *peer;
    peer_.WriteLine("PEER " + absl::BytesToHexString(ep_->address()));
  }

  void TearDown() override {
    ep_.reset();
    fabric_.reset();
    ns_.reset();
    peer_.Kill();
  }

  static constexpr size_t kSize = 1 << 20;
  std::unique_ptr<rpci::testing::VethPair> pair_;
  PeerProcess peer_;
  RemoteRegion remote_;
  std::unique_ptr<InNamespace> ns_;
  std::unique_ptr<Fabric> fabric_;
  std::unique_ptr<Endpoint> ep_;
  PeerId peer_id_ = 0;
};

// The same peer as another process on loopback, in our own namespace.
class FabricCrossProcessTest : public FabricNetnsTest {
 protected:
  void SetUp() override {
    StartPeer({"common/fabric/testing/fabric_peer", "--node", "127.0.0.1", "--size", std::to_string(kSize)}, "",
              "127.0.0.1");
  }
};

void ExpectWriteReadAndMessagesWork(Endpoint& ep, PeerId peer_id, const RemoteRegion& remote) {
  const size_t kSize = remote.size;
  std::vector<uint8_t> initial(kSize), mine(kSize), back(kSize, 0);
  for (size_t i = 0; i < kSize; ++i) initial[i] = testing::PeerPattern(i);
  auto back_mr = *ep.RegisterMemory(back.data(), back.size(), kLocalOnly);
  absl::Status r = ep.Read(peer_id, {back_mr.get(), 0, kSize, remote.address, remote.key});
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_EQ(back, initial);

  for (size_t i = 0; i < kSize; ++i) mine[i] = static_cast<uint8_t>(i ^ 0xa5);
  auto mine_mr = *ep.RegisterMemory(mine.data(), mine.size(), kLocalOnly);
  absl::Status w = ep.Write(peer_id, {mine_mr.get(), 0, kSize, remote.address, remote.key});
  ASSERT_TRUE(w.ok()) << w;

  // The peer's own view of its buffer matches what we wrote.
  ASSERT_TRUE(ep.Send(peer_id, "digest").ok());
  absl::StatusOr<std::string> digest = ep.Recv(absl::Seconds(5));
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, "digest " + testing::Digest(mine.data(), mine.size()));

  ASSERT_TRUE(ep.Send(peer_id, "quit").ok());
  EXPECT_EQ(ep.Recv(absl::Seconds(5)).value_or(""), "bye");
}

TEST_F(FabricCrossProcessTest, WriteReadAndMessagesCrossProcesses) {
  ExpectWriteReadAndMessagesWork(*ep_, peer_id_, remote_);
  EXPECT_EQ(peer_.Wait(absl::Seconds(5)), 0);
}

TEST_F(FabricNetnsTest, WriteReadAndMessagesCrossTheVeth) {
  ExpectWriteReadAndMessagesWork(*ep_, peer_id_, remote_);
  EXPECT_EQ(peer_.Wait(absl::Seconds(5)), 0);
}

TEST_F(FabricNetnsTest, AKilledPeerGivesAnErrorWithinTheTimeout) {
  std::vector<uint8_t> mine(4096, 1);
  auto mine_mr = *ep_->RegisterMemory(mine.data(), mine.size(), kLocalOnly);
  ASSERT_TRUE(ep_->Write(peer_id_, {mine_mr.get(), 0, 4096, remote_.address, remote_.key}).ok());
  peer_.Kill();
  absl::Time start = absl::Now();
  absl::Status w = ep_->Write(peer_id_, {mine_mr.get(), 0, 4096, remote_.address, remote_.key});
  EXPECT_FALSE(w.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << w;
  ep_.reset();
}

TEST_F(FabricNetnsTest, APartitionGivesAnErrorWithinTheTimeout) {
  std::vector<uint8_t> mine(4096, 1);
  auto mine_mr = *ep_->RegisterMemory(mine.data(), mine.size(), kLocalOnly);
  ASSERT_TRUE(ep_->Write(peer_id_, {mine_mr.get(), 0, 4096, remote_.address, remote_.key}).ok());
  ASSERT_TRUE(pair_->SetLinkUp(false).ok());
  absl::Time start = absl::Now();
  absl::Status w = ep_->Write(peer_id_, {mine_mr.get(), 0, 4096, remote_.address, remote_.key});
  EXPECT_FALSE(w.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << w;
  EXPECT_GE(ep_->failed_ops(), 1u);
  // A timed-out write may still reference `mine` until its endpoint is gone.
  ep_.reset();
}

}  // namespace
}  // namespace rpci::fabric
