// Reseal: rewrite a stopped node's sealed personal data under the key file's current key, so
// that older keys can be removed from the file (docs/operator.md, "Encryption at rest").
#ifndef CASEWAY_SERVER_STORE_RESEAL_H_
#define CASEWAY_SERVER_STORE_RESEAL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "server/store/sealer.h"

namespace caseway::server {

// ResealCounts says what ResealDatabase rewrote: bodies that were in the clear (written before
// encryption was on) or sealed with an older key, and those already under the current key.
struct ResealCounts {
  uint64_t was_plain = 0;
  uint64_t was_older_key = 0;
  uint64_t already_current = 0;
};

// ResealDatabase rewrites, under `sealer`'s current key, every body in the database at `db_path`
// (notices published and received, received query answers, the access log's key) that is plain or sealed with another
// key, a thousand rows per transaction (an interrupted run is simply run again), then records
// that only the current key has sealed anything (meta 'seal_keys'), and rebuilds the file
// (VACUUM, then the WAL truncated) so that no freed page keeps a plain or old-key copy.
// FAILED_PRECONDITION when a process (the node) has the database open, when the database was not
// yet opened by this version of caseway-node, or when a body is sealed with a key the file does
// not list; DATA_LOSS when a body does not open.
absl::StatusOr<ResealCounts> ResealDatabase(const std::string& db_path, const Sealer& sealer);

// ResealPostgres does the same for a store in PostgreSQL (`dsn`): it takes the writer lease
// without waiting, so that no node of the jurisdiction runs or takes over meanwhile, fences every
// transaction with it, and rewrites the tables (VACUUM FULL) instead of a file. Row ids stay, so
// departments' feed positions stay valid. FAILED_PRECONDITION naming the holder when a node holds
// the lease, UNAVAILABLE when the database cannot be reached, and as ResealDatabase otherwise.
absl::StatusOr<ResealCounts> ResealPostgres(const std::string& dsn, const Sealer& sealer);

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_RESEAL_H_
