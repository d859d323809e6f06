#ifndef RPCI_COMMON_RETRY_LOOP_H_
#define RPCI_COMMON_RETRY_LOOP_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/log.h"

namespace rpci {

// A background thread that keeps one long-lived conversation going (register
// then watch a stream, heartbeat ...): it runs `attempt` again and again until
// Stop(). After an attempt that returns an error it waits with exponential
// backoff (initial .. max); an attempt that returns OK (it made progress, e.g.
// its stream delivered something before ending) resets the backoff.
class RetryLoop {
 public:
  struct Options {
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(2);
  };

  // `name` appears in the log line of each failed attempt.
  RetryLoop(std::string name, Options options, Logger log);
  ~RetryLoop();
  RetryLoop(const RetryLoop&) = delete;
  RetryLoop& operator=(const RetryLoop&) = delete;

  // Starts the thread. REQUIRES: not started.
  void Start(std::function<absl::Status()> attempt);

  // Asks the loop to end, runs the cancel hook (so a blocking call in the
  // attempt returns), and joins. Idempotent.
  void Stop();

  // For the attempt: a hook Stop() calls to interrupt what the attempt is
  // blocked in (e.g. grpc::ClientContext::TryCancel); cleared with nullptr.
  // Clearing waits for a running hook, so the hook may reference the
  // attempt's locals (they outlive every call of it).
  void SetCancel(std::function<void()> cancel);

  // For the attempt: waits `d` or until Stop(); false when stopping.
  bool Sleep(absl::Duration d);

  bool stopping() const;

 private:
  void Run(std::function<absl::Status()> attempt);

  std::string name_;
  Options options_;
  Logger log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::mutex cancel_mu_;  // held while cancel_ runs and while it is replaced
  std::function<void()> cancel_;  // guarded by cancel_mu_
  std::thread thread_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_RETRY_LOOP_H_
