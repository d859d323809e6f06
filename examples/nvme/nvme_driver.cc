#include "examples/nvme/nvme_driver.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "examples/device_bytes.h"

namespace rpci::examples::nvme {
namespace {

// Controller registers (NVMe 1.4, 3.1).
constexpr uint64_t kCap = 0x00, kCc = 0x14, kCsts = 0x1c, kAqa = 0x24, kAsq = 0x28, kAcq = 0x30;
constexpr uint32_t kCcEnable = 1, kCcIosqes = 6u << 16, kCcIocqes = 4u << 20;
constexpr uint32_t kCstsReady = 1, kCstsFatal = 2;
// Opcodes.
constexpr uint8_t kAdminCreateSq = 0x01, kAdminCreateCq = 0x05, kAdminIdentify = 0x06;
constexpr uint8_t kIoWrite = 0x01, kIoRead = 0x02;
constexpr uint16_t kQueueEntries = 16;
constexpr uint64_t kSqEntry = 64, kCqEntry = 16, kPage = 4096;

std::string Text(const uint8_t* p, size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  return std::string(absl::StripTrailingAsciiWhitespace(s));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NvmeDriver>> NvmeDriver::Start(NvmeTransport* transport, absl::Duration timeout) {
  std::unique_ptr<NvmeDriver> d(new NvmeDriver(transport, timeout));
  if (absl::Status s = d->Enable(); !s.ok()) return s;
  return d;
}

absl::Status NvmeDriver::WaitReady(bool ready) {
  absl::Time end = absl::Now() + timeout_;
  while (true) {
    absl::StatusOr<uint32_t> csts = t_->Read32(kCsts);
    if (!csts.ok()) return csts.status();
    if (*csts & kCstsFatal) return absl::InternalError("nvme: controller fatal status (CSTS.CFS)");
    if (((*csts & kCstsReady) != 0) == ready) return absl::OkStatus();
    if (absl::Now() > end) return absl::DeadlineExceededError(absl::StrFormat("nvme: CSTS.RDY never became %d", ready));
    absl::SleepFor(absl::Milliseconds(2));
  }
}

absl::Status NvmeDriver::Enable() {
  absl::StatusOr<uint64_t> cap = t_->Read64(kCap);
  if (!cap.ok()) return cap.status();
  stride_ = static_cast<uint32_t>((*cap >> 32) & 0xf);
  if ((*cap & 0xffff) + 1 < kQueueEntries) return absl::FailedPreconditionError("nvme: queues too small (CAP.MQES)");
  if (absl::Status s = t_->Write32(kCc, 0); !s.ok()) return s;
  if (absl::Status s = WaitReady(false); !s.ok()) return s;
  for (Queue* q : {&admin_sq_, &admin_cq_, &io_sq_, &io_cq_}) {
    absl::StatusOr<NvmeTransport::Dma> mem = t_->AllocDma(kPage);
    if (!mem.ok()) return mem.status();
    q->mem = *mem;
    q->entries = kQueueEntries;
  }
  io_sq_.id = io_cq_.id = 1;
  absl::StatusOr<NvmeTransport::Dma> buf = t_->AllocDma(2 * kPage);
  if (!buf.ok()) return buf.status();
  buffer_ = *buf;
  if (absl::Status s = t_->ToDevice(admin_cq_.mem, 0, kPage); !s.ok()) return s;  // zeroed phase bits
  if (absl::Status s = t_->Write32(kAqa, (kQueueEntries - 1u) << 16 | (kQueueEntries - 1u)); !s.ok()) return s;
  if (absl::Status s = t_->Write64(kAsq, admin_sq_.mem.device_addr); !s.ok()) return s;
  if (absl::Status s = t_->Write64(kAcq, admin_cq_.mem.device_addr); !s.ok()) return s;
  if (absl::Status s = t_->Write32(kCc, kCcEnable | kCcIosqes | kCcIocqes); !s.ok()) return s;
  return WaitReady(true);
}

absl::Status NvmeDriver::Submit(Queue& sq, Queue& cq, const Command& cmd) {
  const uint16_t cid = next_cid_++;
  uint8_t* e = sq.mem.host + sq.tail * kSqEntry;
  std::memset(e, 0, kSqEntry);
  Put32(e, cmd.opcode | (uint32_t{cid} << 16));
  Put32(e + 4, cmd.nsid);
  Put64(e + 24, cmd.prp1);
  Put64(e + 32, cmd.prp2);
  Put32(e + 40, cmd.cdw10);
  Put32(e + 44, cmd.cdw11);
  Put32(e + 48, cmd.cdw12);
  if (absl::Status s = t_->ToDevice(sq.mem, sq.tail * kSqEntry, kSqEntry); !s.ok()) return s;
  sq.tail = (sq.tail + 1) % sq.entries;
  if (absl::Status s = t_->Doorbell(SqDoorbell(sq.id), sq.tail); !s.ok()) return s;
  absl::Time end = absl::Now() + timeout_;
  while (true) {
    if (absl::Status s = t_->FromDevice(cq.mem, cq.head * kCqEntry, kCqEntry); !s.ok()) return s;
    const uint8_t* c = cq.mem.host + cq.head * kCqEntry;
    uint32_t dw3 = Get32(c + 12);
    if (((dw3 >> 16) & 1) == cq.phase) {
      if ((dw3 & 0xffff) != cid) return absl::InternalError(absl::StrFormat("nvme: completion for cid %d, expected %d", dw3 & 0xffff, cid));
      cq.head = (cq.head + 1) % cq.entries;
      if (cq.head == 0) cq.phase ^= 1;
      if (absl::Status s = t_->Doorbell(CqDoorbell(cq.id), cq.head); !s.ok()) return s;
      uint32_t status = (dw3 >> 17) & 0x7fff;
      if (status != 0) {
        return absl::InternalError(absl::StrFormat("nvme: opcode 0x%02x failed: status type %d code 0x%02x",
                                                   cmd.opcode, (status >> 8) & 7, status & 0xff));
      }
      return absl::OkStatus();
    }
    if (absl::Now() > end) return absl::DeadlineExceededError(absl::StrFormat("nvme: no completion for opcode 0x%02x", cmd.opcode));
    absl::Status w = t_->WaitInterrupt(absl::Milliseconds(200));
    if (w.ok()) ++interrupts_;
    else if (!absl::IsDeadlineExceeded(w)) return w;
  }
}

absl::Status NvmeDriver::Identify(uint32_t cns, uint32_t nsid) {
  Command cmd;
  cmd.opcode = kAdminIdentify;
  cmd.nsid = nsid;
  cmd.prp1 = buffer_.device_addr;
  cmd.cdw10 = cns;
  if (absl::Status s = Submit(admin_sq_, admin_cq_, cmd); !s.ok()) return s;
  return t_->FromDevice(buffer_, 0, kPage);
}

absl::StatusOr<ControllerInfo> NvmeDriver::IdentifyController() {
  if (absl::Status s = Identify(/*cns=*/1, /*nsid=*/0); !s.ok()) return s;
  ControllerInfo info;
  info.serial = Text(buffer_.host + 4, 20);
  info.model = Text(buffer_.host + 24, 40);
  info.namespaces = Get32(buffer_.host + 516);
  return info;
}

absl::StatusOr<NamespaceInfo> NvmeDriver::IdentifyNamespace(uint32_t nsid) {
  if (absl::Status s = Identify(/*cns=*/0, nsid); !s.ok()) return s;
  NamespaceInfo info;
  std::memcpy(&info.blocks, buffer_.host, 8);
  uint8_t format = buffer_.host[26] & 0xf;
  uint8_t lbads = buffer_.host[128 + 4 * format + 2];
  if (lbads < 9 || lbads > 12) return absl::InternalError(absl::StrFormat("nvme: block size 2^%d unsupported", lbads));
  info.block_size = 1u << lbads;
  return info;
}

absl::Status NvmeDriver::CreateIoQueues() {
  if (absl::Status s = t_->ToDevice(io_cq_.mem, 0, kPage); !s.ok()) return s;
  Command cq;
  cq.opcode = kAdminCreateCq;
  cq.prp1 = io_cq_.mem.device_addr;
  cq.cdw10 = (uint32_t{io_cq_.entries} - 1) << 16 | io_cq_.id;
  cq.cdw11 = 0x3;  // interrupts enabled (vector 0), physically contiguous
  if (absl::Status s = Submit(admin_sq_, admin_cq_, cq); !s.ok()) return s;
  Command sq;
  sq.opcode = kAdminCreateSq;
  sq.prp1 = io_sq_.mem.device_addr;
  sq.cdw10 = (uint32_t{io_sq_.entries} - 1) << 16 | io_sq_.id;
  sq.cdw11 = uint32_t{io_cq_.id} << 16 | 0x1;  // physically contiguous
  return Submit(admin_sq_, admin_cq_, sq);
}

absl::Status NvmeDriver::Io(uint8_t opcode, uint32_t nsid, uint64_t lba, uint32_t count, uint32_t block_size) {
  uint64_t bytes = uint64_t{count} * block_size;
  if (count == 0 || bytes > buffer_.size) return absl::InvalidArgumentError("nvme: transfer must be 1 block to two pages");
  Command cmd;
  cmd.opcode = opcode;
  cmd.nsid = nsid;
  cmd.prp1 = buffer_.device_addr;
  cmd.prp2 = bytes > kPage ? buffer_.device_addr + kPage : 0;
  cmd.cdw10 = static_cast<uint32_t>(lba);
  cmd.cdw11 = static_cast<uint32_t>(lba >> 32);
  cmd.cdw12 = count - 1;
  return Submit(io_sq_, io_cq_, cmd);
}

absl::Status NvmeDriver::WriteBlocks(uint32_t nsid, uint64_t lba, uint32_t count, const uint8_t* data,
                                     uint32_t block_size) {
  uint64_t bytes = uint64_t{count} * block_size;
  if (bytes > buffer_.size) return absl::InvalidArgumentError("nvme: transfer larger than two pages");
  std::memcpy(buffer_.host, data, bytes);
  if (absl::Status s = t_->ToDevice(buffer_, 0, bytes); !s.ok()) return s;
  return Io(kIoWrite, nsid, lba, count, block_size);
}

absl::Status NvmeDriver::ReadBlocks(uint32_t nsid, uint64_t lba, uint32_t count, uint8_t* data, uint32_t block_size) {
  uint64_t bytes = uint64_t{count} * block_size;
  if (bytes > buffer_.size) return absl::InvalidArgumentError("nvme: transfer larger than two pages");
  std::memset(buffer_.host, 0, bytes);
  if (absl::Status s = t_->ToDevice(buffer_, 0, bytes); !s.ok()) return s;
  if (absl::Status s = Io(kIoRead, nsid, lba, count, block_size); !s.ok()) return s;
  if (absl::Status s = t_->FromDevice(buffer_, 0, bytes); !s.ok()) return s;
  std::memcpy(data, buffer_.host, bytes);
  return absl::OkStatus();
}

absl::Status NvmeDriver::Shutdown() {
  if (absl::Status s = t_->Write32(kCc, 0); !s.ok()) return s;
  return WaitReady(false);
}

}  // namespace rpci::examples::nvme
