// Checkpointer: signs the exchange log's checkpoints.
#ifndef CASEWAY_SERVER_LOG_CHECKPOINTER_H_
#define CASEWAY_SERVER_LOG_CHECKPOINTER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/signing.h"
#include "server/log/periodic.h"
#include "server/store/notice_store.h"

namespace caseway::server {

// Checkpointer signs a C2SP checkpoint of the committed log every `interval` while it grows, and
// only after checking that the new tree is consistent with the last signed checkpoint: it never
// signs a checkpoint that contradicts an earlier one. Growth made only of witness records is
// checkpointed at most once a minute (kWitnessOnlyInterval), so idle witnesses settle.
// Concurrency: own thread; SignNow() is thread-safe. Lifetime: `store` outlives it.
class Checkpointer {
 public:
  Checkpointer(NoticeStore* store, std::shared_ptr<const common::SigningKey> key,
               std::string name, absl::Duration interval);
  ~Checkpointer();
  void Start();
  void Stop();
  // SignNow signs a checkpoint of the current log if it grew. FAILED_PRECONDITION (and nothing
  // signed) when the log is inconsistent with the last checkpoint.
  absl::Status SignNow();

 private:
  NoticeStore* const store_;
  const std::shared_ptr<const common::SigningKey> key_;
  const std::string name_;
  static constexpr absl::Duration kWitnessOnlyInterval = absl::Minutes(1);
  void Tick();

  absl::Mutex sign_mu_;  // one signer at a time
  absl::Time last_signed_ ABSL_GUARDED_BY(sign_mu_) = absl::InfinitePast();
  Periodic periodic_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_LOG_CHECKPOINTER_H_
