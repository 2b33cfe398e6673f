#include "server/log/checkpointer.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/merkle.h"
#include "common/status_macros.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;

Checkpointer::Checkpointer(NoticeStore* store, std::shared_ptr<const common::SigningKey> key,
                           std::string name, absl::Duration interval)
    : store_(store), key_(std::move(key)), name_(std::move(name)), interval_(interval) {}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Start() {
  thread_ = std::thread([this] {
    absl::MutexLock lock(&mu_);
    while (!stopping_) {
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_);
      if (stopping_) break;
      mu_.Unlock();
      absl::Status s = SignNow();
      if (!s.ok()) Log(LogLevel::kError, "checkpoint not signed", {{"status", s.ToString()}});
      mu_.Lock();
    }
  });
}

void Checkpointer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status Checkpointer::SignNow() {
  absl::MutexLock sign_lock(&sign_mu_);
  auto [size, root] = store_->LogHead();
  if (size == 0) return absl::OkStatus();
  auto last = store_->LatestCheckpoint();
  if (last.ok()) {
    if (last->size == size) {
      if (last->root != root) {
        return absl::FailedPreconditionError(absl::StrCat(
            "exchange log of size ", size, " has another root than its signed checkpoint"));
      }
      return absl::OkStatus();  // nothing new
    }
    if (last->size > size) {
      return absl::FailedPreconditionError(absl::StrCat("exchange log shrank from ", last->size,
                                                        " to ", size, " entries"));
    }
    ASSIGN_OR_RETURN(auto proof, store_->ConsistencyProof(last->size, size));
    absl::Status consistent = common::VerifyConsistency(last->size, size, proof, last->root, root);
    if (!consistent.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "exchange log is not consistent with checkpoint ", last->size, ": ",
          consistent.message()));
    }
  } else if (last.status().code() != absl::StatusCode::kNotFound) {
    return last.status();
  }
  std::string body = common::CheckpointBody({name_, size, root});
  StoredCheckpoint c;
  c.size = size;
  c.root = root;
  c.note = body + "\n" + common::SignNoteLine(body, name_, *key_);
  return store_->StoreCheckpoint(c);
}

}  // namespace caseway::server
