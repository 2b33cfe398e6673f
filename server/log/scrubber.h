// Scrubber: re-checks the whole stored exchange log in the background.
#ifndef CASEWAY_SERVER_LOG_SCRUBBER_H_
#define CASEWAY_SERVER_LOG_SCRUBBER_H_

#include <cstdint>

#include "common/merkle.h"
#include "server/log/periodic.h"
#include "server/store/exchange_log_store.h"

namespace caseway::server {

// Scrubber walks the stored log from its first entry to the committed head, `rate` entries a
// second, recomputing every leaf and node hash from the entry bytes and every signed checkpoint
// root it passes (ExchangeLogStore::VerifyStored); at the head it starts the next pass. This finds what
// the checkpointer's check of new entries cannot: bytes or hashes edited below an earlier
// checkpoint. A contradiction halts the store (ExchangeLogStore::Halt).
// Concurrency: own thread. Lifetime: `store` outlives it.
// Limitations: a pass over N entries takes N / rate seconds; edits made behind the scrub are found
// on the next pass.
class Scrubber {
 public:
  Scrubber(ExchangeLogStore* store, uint32_t rate);
  void Start() { periodic_.Start(); }
  void Stop() { periodic_.Stop(); }
  // Step checks up to `max_entries` more entries (the thread calls it once a second with `rate`).
  // FAILED_PRECONDITION once the store halted; other errors are read errors.
  absl::Status Step(uint64_t max_entries);

 private:
  ExchangeLogStore* const store_;
  const uint32_t rate_;
  common::MerkleFrontier frontier_;  // the scrub's position (thread-confined)
  Periodic periodic_;  // last: its thread uses the members above
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_LOG_SCRUBBER_H_
