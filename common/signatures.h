// Signatures: what a node needs to sign its own objects and check its peers': its signing key and
// the federation directory, both replaceable while the node runs (a key rotation, a new
// directory: server/node.cc watches their files).
#ifndef CASEWAY_COMMON_SIGNATURES_H_
#define CASEWAY_COMMON_SIGNATURES_H_

#include <functional>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/directory.h"
#include "common/signing.h"

namespace caseway::common {

// Signatures is a shared handle: copies see the same key and directory, and Update() changes
// them for every copy. Default-constructed, it is disabled (the exchange log is off).
// Thread-safe. Each key() or directory() call returns a snapshot: a caller that signs and then
// records the key's use holds the one snapshot throughout.
class Signatures {
 public:
  Signatures() = default;
  Signatures(std::shared_ptr<const SigningKey> key, std::shared_ptr<const Directory> directory)
      : state_(std::make_shared<State>()) {
    state_->key = std::move(key);
    state_->directory = std::move(directory);
  }

  bool enabled() const { return state_ != nullptr; }
  std::shared_ptr<const SigningKey> key() const {
    absl::MutexLock lock(&state_->mu);
    return state_->key;
  }
  std::shared_ptr<const Directory> directory() const {
    absl::MutexLock lock(&state_->mu);
    return state_->directory;
  }
  // SignerFor signs under `context` with the key current now (a rotation applies from the next
  // SignerFor): the Signer (server/store/signer.h) a store call takes. Empty when signatures are
  // off (then the exchange log is off and the store signs nothing).
  std::function<std::string(absl::string_view)> SignerFor(absl::string_view context) const {
    if (!enabled()) return nullptr;
    return [key = key(), context = std::string(context)](absl::string_view message) {
      return key->Sign(context, message);
    };
  }
  void Update(std::shared_ptr<const SigningKey> key, std::shared_ptr<const Directory> directory) {
    absl::MutexLock lock(&state_->mu);
    state_->key = std::move(key);
    state_->directory = std::move(directory);
  }

 private:
  struct State {
    absl::Mutex mu;
    std::shared_ptr<const SigningKey> key ABSL_GUARDED_BY(mu);
    std::shared_ptr<const Directory> directory ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_SIGNATURES_H_
