// Checkpointer: signs the exchange log's checkpoints.
#ifndef CASEWAY_SERVER_LOG_CHECKPOINTER_H_
#define CASEWAY_SERVER_LOG_CHECKPOINTER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/signatures.h"
#include "common/signing.h"
#include "server/log/periodic.h"
#include "server/store/exchange_log_store.h"

namespace caseway::server {

// Checkpointer signs a C2SP checkpoint of the committed log, with its time, every `interval`
// while it grows, after CheckBeforeSigning. Any contradiction halts the store
// (ExchangeLogStore::Halt): nothing is signed or appended any more.
// Growth made only of witness records is checkpointed at most every `witness_only_interval`
// (exchange_log.witness_checkpoint_interval), and only when the checkpoint before covered a real
// event, so that two idle witnesses settle after one round instead of cosigning each other
// forever.
// Concurrency: own thread; SignNow() is thread-safe. Lifetime: `store` outlives it.
class Checkpointer {
 public:
  // Signs with `signatures.key()` at each checkpoint (a rotated key from the next one on); a
  // stored checkpoint is checked against the directory's keys of `jurisdiction` valid at its time
  // (without a directory, benchmarks: against the current key).
  Checkpointer(ExchangeLogStore* store, common::Signatures signatures, std::string name,
               std::string jurisdiction, absl::Duration interval,
               absl::Duration witness_only_interval = absl::Minutes(1));
  ~Checkpointer();
  void Start();
  void Stop();
  // SignNow signs a checkpoint of the current log if it grew. FAILED_PRECONDITION (nothing signed,
  // the store halted) when the stored log contradicts itself or the last checkpoint, or when the
  // store had halted already.
  absl::Status SignNow();

  // CheckBeforeSigning checks what a checkpoint of (size, root) adds to the last one
  // (last_size, last_root): the stored subtree hashes must rebuild last_root; entries this process
  // did not append itself (the tail left before a restart) are re-read from their bytes (format,
  // time order, leaf and node hashes, see ExchangeLogStore::VerifyStored); and the stored subtree
  // hashes of the new tree must rebuild `root`, which the writer computed from the bytes it
  // appended. Constant cost plus the tail: bytes changed later are the scrub's to find.
  // Returns whether the new entries hold an event other than witness records; DATA_LOSS naming a
  // contradiction.
  absl::StatusOr<bool> CheckBeforeSigning(uint64_t last_size, const std::string& last_root,
                                          uint64_t size, const std::string& root);

 private:
  ExchangeLogStore* const store_;
  const common::Signatures signatures_;
  const std::string name_;
  const std::string jurisdiction_;
  const absl::Duration witness_only_interval_;
  void Tick();

  absl::Mutex sign_mu_;  // one signer at a time
  absl::Time last_signed_ ABSL_GUARDED_BY(sign_mu_) = absl::InfinitePast();
  // Whether the last checkpoint signed covered an event other than witness records (unknown
  // after a restart: assumed so).
  bool last_significant_ ABSL_GUARDED_BY(sign_mu_) = true;
  Periodic periodic_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_LOG_CHECKPOINTER_H_
