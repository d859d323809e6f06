#include "common/retry_loop.h"

#include <algorithm>

namespace rpci {

RetryLoop::RetryLoop(std::string name, Options options, Logger log)
    : name_(std::move(name)), options_(options), log_(std::move(log)) {}

RetryLoop::~RetryLoop() { Stop(); }

void RetryLoop::Start(std::function<absl::Status()> attempt) {
  thread_ = std::thread([this, attempt = std::move(attempt)] { Run(attempt); });
}

void RetryLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  {
    // Run the hook under cancel_mu_: the attempt's SetCancel(nullptr) waits
    // for it, so what the hook touches (a ClientContext on the attempt's
    // stack) is not destroyed under it. A copy run after unlocking could be.
    std::lock_guard<std::mutex> lock(cancel_mu_);
    if (cancel_) cancel_();
  }
  if (thread_.joinable()) thread_.join();
}

void RetryLoop::SetCancel(std::function<void()> cancel) {
  std::lock_guard<std::mutex> lock(cancel_mu_);
  cancel_ = std::move(cancel);
}

bool RetryLoop::Sleep(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(d), [&] { return stopping_; });
  return !stopping_;
}

bool RetryLoop::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void RetryLoop::Run(std::function<absl::Status()> attempt) {
  absl::Duration backoff = options_.initial_backoff;
  while (!stopping()) {
    absl::Status s = attempt();
    if (stopping()) return;
    if (s.ok()) {
      backoff = options_.initial_backoff;
      continue;
    }
    log_.Warn(name_ + " failed; retrying",
              {{"error", std::string(s.message())},
               {"code", absl::StatusCodeToString(s.code())},
               {"retry_in_ms", absl::ToInt64Milliseconds(backoff)}});
    if (!Sleep(backoff)) return;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

}  // namespace rpci
