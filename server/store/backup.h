// Backup: a consistent copy of a node's database, taken while the node runs, and the mark that
// tells a node started on it that it was restored (docs/operator.md, "Backup and restore").
#ifndef CASEWAY_SERVER_STORE_BACKUP_H_
#define CASEWAY_SERVER_STORE_BACKUP_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace caseway::server {

// BackupSummary describes what a backup holds (for the operator's record).
struct BackupSummary {
  absl::Time taken_at;
  uint64_t bytes = 0;
  uint64_t log_size = 0;
  std::map<std::string, uint64_t> channel_heads;  // destination -> highest sequence assigned
  std::map<std::string, uint64_t> cursors;        // origin -> highest sequence stored
};

// BackupDatabase copies the database at `db_path` to `out` as one snapshot (SQLite's VACUUM
// INTO, from a read-only connection: the node goes on writing meanwhile), fsyncs it, and marks
// the copy as a backup taken now (meta 'backup_taken_at'): a node started on it asks its peers
// what it may have lost before it exchanges anything. `out` must not exist; it appears only
// complete (written as `out`.partial, then renamed). ALREADY_EXISTS, NOT_FOUND (no database),
// or the SQLite error.
absl::StatusOr<BackupSummary> BackupDatabase(const std::string& db_path, const std::string& out);

// RestoreDatabase puts the backup `from` in place of the database at `db_path`, for a node that
// is stopped: the current files (database, WAL, shared memory) are kept beside it, renamed
// `<db_path>.replaced-<UTC time>`, and the copy is written, synced and renamed into place. The
// node then asks its peers before it starts (ConfirmRestore). FAILED_PRECONDITION when `from` is
// not a backup made by BackupDatabase or fails SQLite's check, or when a process (the node) has
// the database open. Returns the backup's time.
absl::StatusOr<absl::Time> RestoreDatabase(const std::string& from, const std::string& db_path);

// DatabaseInUse says whether a process holds `db_path` open: every SQLite connection in WAL mode
// holds a shared lock on the DMS byte of the -shm file for as long as it is open. A -shm file
// this process cannot open counts as in use: an offline command must not guess.
bool DatabaseInUse(const std::string& db_path);

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_BACKUP_H_
