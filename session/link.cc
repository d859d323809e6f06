#include "session/link.h"

#include <rdma/fi_cm.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "session/session_key.h"

namespace rpci::session {

struct Link::Op {
  fi_context2 ctx;  // first: libfabric hands this pointer back
  bool done = false;
  int err = 0;
  bool is_recv = false;
  size_t slot = 0;
  std::string buf;  // send payload copy
};

namespace {

absl::Status FiError(const std::string& what, int rc) {
  return absl::UnavailableError(absl::StrFormat("fabric: %s: %s", what, fi_strerror(-rc)));
}

}  // namespace

uint64_t EffectiveMrMode(uint64_t reported) {
  // The pre-1.5 enum values mean fixed sets of the mode bits.
  if (reported == FI_MR_BASIC) return FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  if (reported == FI_MR_SCALABLE) return 0;
  return reported;
}

MemoryRegion::~MemoryRegion() {
  if (mr_ != nullptr) fi_close(&mr_->fid);
}

absl::StatusOr<std::unique_ptr<Link>> Link::Create(const LinkOptions& options) {
  std::unique_ptr<Link> link(new Link());
  if (absl::Status s = link->Init(options); !s.ok()) return s;
  return link;
}

absl::Status Link::Init(const LinkOptions& options) {
  op_timeout_ = options.op_timeout;
  fi_info* hints = fi_allocinfo();
  if (hints == nullptr) return absl::ResourceExhaustedError("fabric: fi_allocinfo failed");
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = FI_MSG | FI_RMA;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  hints->tx_attr->msg_order = FI_ORDER_SAW | FI_ORDER_SAS | FI_ORDER_WAW | FI_ORDER_RAW;
  // A completion means the peer has placed the data (and checked the key).
  hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
  hints->fabric_attr->prov_name = strdup(options.provider.c_str());
  int rc = fi_getinfo(FI_VERSION(1, 9), options.node.c_str(), nullptr, FI_SOURCE, hints, &info_);
  fi_freeinfo(hints);
  if (rc != 0) {
    return FiError(absl::StrFormat("no provider \"%s\" on %s", options.provider, options.node), rc);
  }
  provider_ = info_->fabric_attr->prov_name ? info_->fabric_attr->prov_name : options.provider;
  const uint64_t mr_mode = EffectiveMrMode(info_->domain_attr->mr_mode);
  // Without FI_MR_VIRT_ADDR the target adds the region's base: RMA names
  // byte offsets into the region (tcp;ofi_rxm reports 0 here).
  virt_addr_ = (mr_mode & FI_MR_VIRT_ADDR) != 0;
  prov_key_ = (mr_mode & FI_MR_PROV_KEY) != 0;
  mr_endpoint_ = (mr_mode & FI_MR_ENDPOINT) != 0;
  mr_local_ = (mr_mode & FI_MR_LOCAL) != 0;
  ordered_writes_ = (info_->tx_attr->msg_order & (FI_ORDER_WAW | FI_ORDER_SAW)) == (FI_ORDER_WAW | FI_ORDER_SAW);

  if ((rc = fi_fabric(info_->fabric_attr, &fabric_, nullptr)) != 0) return FiError("fi_fabric", rc);
  if ((rc = fi_domain(fabric_, info_, &domain_, nullptr)) != 0) return FiError("fi_domain", rc);
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_MSG;
  cq_attr.wait_obj = FI_WAIT_FD;
  cq_attr.size = 1024;
  if ((rc = fi_cq_open(domain_, &cq_attr, &cq_, nullptr)) != 0) return FiError("fi_cq_open", rc);
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_TABLE;
  if ((rc = fi_av_open(domain_, &av_attr, &av_, nullptr)) != 0) return FiError("fi_av_open", rc);
  if ((rc = fi_endpoint(domain_, info_, &ep_, nullptr)) != 0) return FiError("fi_endpoint", rc);
  if ((rc = fi_ep_bind(ep_, &cq_->fid, FI_TRANSMIT | FI_RECV)) != 0) return FiError("bind cq", rc);
  if ((rc = fi_ep_bind(ep_, &av_->fid, 0)) != 0) return FiError("bind av", rc);
  if ((rc = fi_enable(ep_)) != 0) return FiError("fi_enable", rc);
  char name[256];
  size_t len = sizeof(name);
  if ((rc = fi_getname(&ep_->fid, name, &len)) != 0) return FiError("fi_getname", rc);
  address_.assign(name, len);

  recv_buf_.resize(kRecvSlots * kMaxMessage);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> mr = Register(recv_buf_.data(), recv_buf_.size(), 0);
  if (!mr.ok()) return mr.status();
  recv_mr_ = std::move(*mr);
  for (size_t i = 0; i < kRecvSlots; ++i) {
    auto op = std::make_shared<Op>();
    op->is_recv = true;
    op->slot = i;
    recv_ops_.push_back(op);
    if (absl::Status s = PostRecv(i); !s.ok()) return s;
  }
  progress_ = std::thread([this] { ProgressLoop(); });
  return absl::OkStatus();
}

Link::~Link() {
  Shutdown();
  recv_mr_.reset();
  if (ep_ != nullptr) fi_close(&ep_->fid);
  if (av_ != nullptr) fi_close(&av_->fid);
  if (cq_ != nullptr) fi_close(&cq_->fid);
  if (domain_ != nullptr) fi_close(&domain_->fid);
  if (fabric_ != nullptr) fi_close(&fabric_->fid);
  if (info_ != nullptr) fi_freeinfo(info_);
}

void Link::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (cq_ != nullptr) fi_cq_signal(cq_);
  if (progress_.joinable()) progress_.join();
}

uint64_t Link::failed_ops() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_ops_;
}

absl::Status Link::PostRecv(size_t slot) {
  Op* op = recv_ops_[slot].get();
  op->done = false;
  while (true) {
    ssize_t rc = fi_recv(ep_, &recv_buf_[slot * kMaxMessage], kMaxMessage, recv_mr_->desc(), FI_ADDR_UNSPEC,
                         &op->ctx);
    if (rc == 0) return absl::OkStatus();
    if (rc != -FI_EAGAIN) return FiError("fi_recv", static_cast<int>(rc));
    fi_cq_read(cq_, nullptr, 0);  // make progress, then retry
  }
}

void Link::ProgressLoop() {
  fi_cq_msg_entry entries[16];
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    ssize_t n = fi_cq_sread(cq_, entries, 16, nullptr, 20);
    if (n == -FI_EAGAIN || n == 0) continue;
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      if (fi_cq_readerr(cq_, &err, 0) <= 0) continue;
      Op* op = static_cast<Op*>(err.op_context);
      std::lock_guard<std::mutex> lock(mu_);
      ++failed_ops_;
      if (op != nullptr && !op->is_recv) {
        op->done = true;
        op->err = err.err != 0 ? err.err : FI_EOTHER;
        inflight_.erase(op);
      } else if (op != nullptr && !stopping_) {
        PostRecv(op->slot).IgnoreError();
      }
      cv_.notify_all();
      continue;
    }
    if (n < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    for (ssize_t i = 0; i < n; ++i) {
      Op* op = static_cast<Op*>(entries[i].op_context);
      if (op == nullptr) continue;
      if (op->is_recv) {
        const size_t len = std::min<size_t>(entries[i].len, kMaxMessage);
        inbox_.emplace_back(reinterpret_cast<const char*>(&recv_buf_[op->slot * kMaxMessage]), len);
        if (!stopping_) PostRecv(op->slot).IgnoreError();
      } else {
        op->done = true;
        inflight_.erase(op);
      }
    }
    cv_.notify_all();
  }
}

absl::StatusOr<PeerAddr> Link::AddPeer(const std::string& address) {
  if (address.empty() || address.size() > 256) {
    return absl::InvalidArgumentError(absl::StrFormat("fabric: peer address of %u bytes", address.size()));
  }
  fi_addr_t addr = FI_ADDR_UNSPEC;
  int rc = fi_av_insert(av_, address.data(), 1, &addr, 0, nullptr);
  if (rc != 1) return absl::InvalidArgumentError("fabric: peer address rejected by the address vector");
  return static_cast<PeerAddr>(addr);
}

void Link::RemovePeer(PeerAddr peer) {
  fi_addr_t addr = peer;
  fi_av_remove(av_, &addr, 1, 0);
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> Link::Register(void* data, size_t size, uint64_t remote_access) {
  if (data == nullptr || size == 0) return absl::InvalidArgumentError("fabric: register of an empty buffer");
  std::unique_ptr<MemoryRegion> region(new MemoryRegion());
  uint64_t requested_key = 0;
  if (!prov_key_) {
    absl::StatusOr<uint64_t> key = RandomU64();
    if (!key.ok()) return key.status();
    requested_key = *key;
  }
  const uint64_t access = FI_SEND | FI_RECV | FI_READ | FI_WRITE | remote_access;
  int rc = fi_mr_reg(domain_, data, size, access, 0, requested_key, 0, &region->mr_, nullptr);
  if (rc != 0) return FiError(absl::StrFormat("register %u bytes", size), rc);
  if (mr_endpoint_) {
    if ((rc = fi_mr_bind(region->mr_, &ep_->fid, 0)) != 0) return FiError("fi_mr_bind", rc);
    if ((rc = fi_mr_enable(region->mr_)) != 0) return FiError("fi_mr_enable", rc);
  }
  region->data_ = static_cast<uint8_t*>(data);
  region->size_ = size;
  region->key_ = fi_mr_key(region->mr_);
  region->desc_ = fi_mr_desc(region->mr_);
  region->remote_address_ = virt_addr_ ? reinterpret_cast<uint64_t>(data) : 0;
  return region;
}

absl::Status Link::WaitOps(const std::vector<std::shared_ptr<Op>>& ops, const char* what) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(op_timeout_);
  for (const auto& op : ops) {
    if (!cv_.wait_until(lock, deadline, [&] { return op->done || stopping_; })) {
      ++failed_ops_;
      return absl::UnavailableError(absl::StrFormat("fabric: %s timed out after %s", what,
                                                    absl::FormatDuration(op_timeout_)));
    }
    if (!op->done) return absl::CancelledError(absl::StrFormat("fabric: %s: link shut down", what));
    if (op->err != 0) return FiError(what, -op->err);
  }
  return absl::OkStatus();
}

absl::Status Link::PostRma(PeerAddr peer, const std::vector<RmaSegment>& segments, bool write,
                           std::vector<std::shared_ptr<Op>>* ops) {
  const absl::Time post_deadline = absl::Now() + op_timeout_;
  for (const RmaSegment& seg : segments) {
    if (seg.local == nullptr || seg.len == 0 || seg.local_offset > seg.local->size() ||
        seg.len > seg.local->size() - seg.local_offset) {
      return absl::OutOfRangeError("fabric: rma segment outside its local region");
    }
    auto op = std::make_shared<Op>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return absl::CancelledError("fabric: link shut down");
      inflight_[op.get()] = op;
    }
    void* buf = seg.local->data() + seg.local_offset;
    while (true) {
      ssize_t rc = write ? fi_write(ep_, buf, seg.len, seg.local->desc(), peer, seg.remote_address, seg.key, &op->ctx)
                         : fi_read(ep_, buf, seg.len, seg.local->desc(), peer, seg.remote_address, seg.key, &op->ctx);
      if (rc == 0) break;
      if (absl::Status s = Backoff(rc, post_deadline, op.get(), write ? "fi_write" : "fi_read"); !s.ok()) return s;
    }
    ops->push_back(op);
  }
  return absl::OkStatus();
}

absl::Status Link::Backoff(ssize_t rc, absl::Time deadline, Op* op, const char* what) {
  if (rc != -FI_EAGAIN || absl::Now() > deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    inflight_.erase(op);
    ++failed_ops_;
    if (rc != -FI_EAGAIN) return FiError(what, static_cast<int>(rc));
    return absl::UnavailableError(absl::StrFormat("fabric: %s: peer not accepting operations (timed out)", what));
  }
  fi_cq_signal(cq_);
  std::this_thread::sleep_for(std::chrono::microseconds(50));
  return absl::OkStatus();
}

absl::Status Link::Rma(PeerAddr peer, const std::vector<RmaSegment>& segments, bool write) {
  std::vector<std::shared_ptr<Op>> ops;
  absl::Status posted = PostRma(peer, segments, write, &ops);
  fi_cq_signal(cq_);
  absl::Status done = WaitOps(ops, write ? "rma write" : "rma read");
  return posted.ok() ? done : posted;
}

absl::Status Link::Write(PeerAddr peer, const std::vector<RmaSegment>& segments) { return Rma(peer, segments, true); }

absl::Status Link::Read(PeerAddr peer, const std::vector<RmaSegment>& segments) { return Rma(peer, segments, false); }

absl::Status Link::PostSend(PeerAddr peer, const void* data, size_t len, std::vector<std::shared_ptr<Op>>* ops) {
  if (len == 0 || len > kMaxMessage) return absl::InvalidArgumentError("fabric: message size out of range");
  auto op = std::make_shared<Op>();
  op->buf.assign(static_cast<const char*>(data), len);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::CancelledError("fabric: link shut down");
    inflight_[op.get()] = op;
  }
  const absl::Time post_deadline = absl::Now() + op_timeout_;
  while (true) {
    ssize_t rc = fi_send(ep_, op->buf.data(), len, nullptr, peer, &op->ctx);
    if (rc == 0) break;
    if (absl::Status s = Backoff(rc, post_deadline, op.get(), "fi_send"); !s.ok()) return s;
  }
  ops->push_back(op);
  return absl::OkStatus();
}

absl::Status Link::Send(PeerAddr peer, const void* data, size_t len) {
  std::vector<std::shared_ptr<Op>> ops;
  if (absl::Status s = PostSend(peer, data, len, &ops); !s.ok()) return s;
  fi_cq_signal(cq_);
  return WaitOps(ops, "send");
}

absl::Status Link::WriteAndSend(PeerAddr peer, const std::vector<RmaSegment>& segments, const void* data,
                                size_t len) {
  if (!ordered_writes_) {
    if (!segments.empty()) {
      if (absl::Status s = Write(peer, segments); !s.ok()) return s;
    }
    return Send(peer, data, len);
  }
  std::vector<std::shared_ptr<Op>> ops;
  absl::Status posted = PostRma(peer, segments, true, &ops);
  if (posted.ok()) posted = PostSend(peer, data, len, &ops);
  fi_cq_signal(cq_);
  absl::Status done = WaitOps(ops, "rma write and send");
  return posted.ok() ? done : posted;
}

absl::StatusOr<std::string> Link::Receive(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  if (!cv_.wait_until(lock, deadline, [&] { return !inbox_.empty() || stopping_; })) {
    return absl::DeadlineExceededError("fabric: no message");
  }
  if (inbox_.empty()) return absl::CancelledError("fabric: link shut down");
  std::string msg = std::move(inbox_.front());
  inbox_.pop_front();
  return msg;
}

}  // namespace rpci::session
