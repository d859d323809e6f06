#ifndef RPCI_TESTS_HARNESS_OWNERSHIP_H_
#define RPCI_TESTS_HARNESS_OWNERSHIP_H_

// Whether an object must undo what it set up on the machine (namespaces,
// links, rxe devices) when it is destroyed. Moving passes the duty on: the
// moved-from object no longer owns anything, so a class holding one (plus
// values) gets a correct move constructor by `= default`.

#include <utility>

namespace rpci::testing {

class Ownership {
 public:
  Ownership() = default;
  Ownership(Ownership&& other) noexcept : owned_(std::exchange(other.owned_, false)) {}
  Ownership& operator=(Ownership&&) = delete;

  // From now on the holder undoes its setup when destroyed.
  void Take() { owned_ = true; }
  explicit operator bool() const { return owned_; }

 private:
  bool owned_ = false;
};

}  // namespace rpci::testing

#endif  // RPCI_TESTS_HARNESS_OWNERSHIP_H_
